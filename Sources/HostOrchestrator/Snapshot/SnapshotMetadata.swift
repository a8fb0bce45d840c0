#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `metadata.json` of a snapshot directory: what it was captured with and where its
/// parts are. Written by `SnapshotStore.commit`, never edited afterwards.
public struct SnapshotMetadata: Sendable, Equatable, Codable {
    /// Bumped when the directory layout or the meaning of a field changes; a newer
    /// format is left alone by older binaries.
    public static let currentFormatVersion = 1

    public var formatVersion: Int
    public var created: Date
    /// File name (inside the snapshot directory) of the compressed RAM state.
    public var ramStateFile: String
    /// File name of the immutable disk layer (the capture-time overlay).
    public var diskLayerFile: String
    public var facts: HostFacts
    /// How the RAM state was written (nil in metadata that predates the field: a stream).
    public var ramStateFormat: RAMStateFormat?
    /// Uncompressed size of the RAM state, for progress display.
    public var ramStateBytes: Int64?
    /// Migration capabilities enabled at capture; a resume enables the same (plus `events`).
    public var migrationCapabilities: [String]?
    /// Wall time of the capture (boot + migration + compression), for information.
    public var captureSeconds: Double?

    public init(created: Date, facts: HostFacts, ramStateFile: String = SnapshotStore.defaultRAMStateFile,
                diskLayerFile: String = SnapshotStore.diskLayerFile, formatVersion: Int = SnapshotMetadata.currentFormatVersion,
                ramStateFormat: RAMStateFormat? = nil, ramStateBytes: Int64? = nil, migrationCapabilities: [String]? = nil,
                captureSeconds: Double? = nil) {
        self.formatVersion = formatVersion
        self.created = created
        self.ramStateFile = ramStateFile
        self.diskLayerFile = diskLayerFile
        self.facts = facts
        self.ramStateFormat = ramStateFormat
        self.ramStateBytes = ramStateBytes
        self.migrationCapabilities = migrationCapabilities
        self.captureSeconds = captureSeconds
    }

    /// The effective format (older metadata: a stream).
    public var format: RAMStateFormat { ramStateFormat ?? .zstdStream }

    func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return Array(try encoder.encode(self))
    }

    static func decode(_ bytes: [UInt8]) throws -> SnapshotMetadata {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(SnapshotMetadata.self, from: Data(bytes))
    }

    /// Only the version, readable whatever else a future format changed.
    struct Version: Decodable { var formatVersion: Int }

    static func formatVersion(of bytes: [UInt8]) -> Int? {
        try? JSONDecoder().decode(Version.self, from: Data(bytes)).formatVersion
    }
}

/// How a snapshot's RAM state is stored.
public enum RAMStateFormat: String, Sendable, Codable, Equatable {
    /// QEMU's sequential migration stream (`migrate fd:` into a pipe), one zstd frame.
    /// The only format QEMU 7.2 can produce without a temporary uncompressed file.
    case zstdStream = "zstd-migration-stream"
    /// A `mapped-ram` migration file (QEMU ≥ 9.0, `file:` URI, multifd), compressed
    /// with zstd; resumed from a sparse uncompressed copy (`ram.raw`) in the snapshot.
    case zstdMappedRAM = "zstd-mapped-ram"
}
