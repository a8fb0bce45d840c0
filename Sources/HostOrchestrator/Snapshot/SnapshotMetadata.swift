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

    public init(created: Date, facts: HostFacts, ramStateFile: String = SnapshotStore.defaultRAMStateFile,
                diskLayerFile: String = SnapshotStore.diskLayerFile, formatVersion: Int = SnapshotMetadata.currentFormatVersion) {
        self.formatVersion = formatVersion
        self.created = created
        self.ramStateFile = ramStateFile
        self.diskLayerFile = diskLayerFile
        self.facts = facts
    }

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
