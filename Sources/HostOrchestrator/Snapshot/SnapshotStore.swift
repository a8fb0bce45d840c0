#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import StackCore

/// The snapshots of one architecture, under IMAGE_DIR (they survive `reset`):
///
///     <root>/snapshot-<time>-<rand>/      committed: ram.zst, disk.qcow2 (0444), metadata.json
///     <root>/current -> snapshot-…        the one in use, swapped by an atomic rename
///     <root>/snapshot-….partial/          a capture in progress; never read
///     <root>/quarantine/snapshot-…/       failed snapshots with quarantine.json (the reason)
///
/// A capture becomes visible only when complete (`commit`: files checked, metadata
/// written and fsynced, directory renamed, `current` swapped), so a crash mid-capture
/// never leaves a half-written snapshot in use. A snapshot that failed to resume is
/// quarantined rather than retried on every start (§5.4 #15). Callers hold the
/// `StartLock` while changing the store.
public struct SnapshotStore: Sendable {
    public let root: String

    public static let defaultRAMStateFile = "ram.zst"
    public static let diskLayerFile = "disk.qcow2"
    public static let metadataFile = "metadata.json"
    public static let currentLink = "current"
    public static let quarantineDirectory = "quarantine"
    public static let quarantineRecord = "quarantine.json"
    static let partialSuffix = ".partial"
    static let idPrefix = "snapshot-"

    public init(root: String) {
        self.root = root
    }

    // MARK: capture

    /// Creates a fresh `<id>.partial` directory (0700). Leftovers of interrupted
    /// captures and snapshots no longer `current` are removed first.
    public func beginCapture() throws -> SnapshotCapture {
        try FileSystem.makeDirectory(root, mode: 0o755)
        let current = (try? currentID()) ?? nil
        for name in try FileSystem.contents(of: root) where name.hasPrefix(SnapshotStore.idPrefix) && name != current {
            try FileSystem.removeTree(Path.join(root, name))
        }
        let id = SnapshotStore.idPrefix + "\(Int64(Date().timeIntervalSince1970))-\(RandomToken.hex(bytes: 4))"
        let directory = Path.join(root, id + SnapshotStore.partialSuffix)
        try FileSystem.makeDirectory(directory, mode: 0o700)
        return SnapshotCapture(id: id, directory: directory)
    }

    /// Publishes a finished capture as the current snapshot; the previous one is
    /// removed. Throws `.snapshotInvalid` (and publishes nothing) when the RAM state or
    /// disk layer named by `metadata` is missing or empty.
    @discardableResult
    public func commit(_ capture: SnapshotCapture, metadata: SnapshotMetadata) throws -> Snapshot {
        for file in [metadata.ramStateFile, metadata.diskLayerFile] {
            guard !file.contains("/"), let status = try FileSystem.status(capture.path(for: file)), status.isRegularFile, status.size > 0 else {
                throw HostError(.snapshotInvalid, "capture \(capture.id) is incomplete: \(capture.path(for: file)) is missing or empty; nothing was published")
            }
            try FileSystem.setMode(capture.path(for: file), 0o444)
        }
        let bytes = try HostError.translating { try metadata.encoded() }
        // What readers will see (ISO 8601 keeps whole seconds only).
        let stored = try HostError.translating { try SnapshotMetadata.decode(bytes) }
        try HostError.translating { try AtomicFile(path: capture.path(for: SnapshotStore.metadataFile), mode: 0o444).write(bytes) }
        try HostError.translating { try AtomicFile.syncDirectory(capture.directory) }

        let directory = Path.join(root, capture.id)
        try FileSystem.rename(capture.directory, directory)
        try FileSystem.setMode(directory, 0o755)
        let previous = try currentID()
        try pointCurrent(at: capture.id)
        if let previous, previous != capture.id {
            try? FileSystem.removeTree(Path.join(root, previous))
        }
        return Snapshot(id: capture.id, directory: directory, metadata: stored)
    }

    /// Removes an unfinished capture.
    public func abandon(_ capture: SnapshotCapture) {
        try? FileSystem.removeTree(capture.directory)
    }

    // MARK: lookup

    /// The current snapshot judged against `facts`.
    public func currentSnapshot(matching facts: HostFacts) -> SnapshotLookup {
        let lookup = current()
        guard case .usable(let snapshot) = lookup else { return lookup }
        let differences = facts.differences(fromCaptured: snapshot.metadata.facts)
        return differences.isEmpty ? lookup : .mismatched(snapshot, differences: differences)
    }

    /// The current snapshot if it is intact (`.usable`), without comparing facts.
    public func current() -> SnapshotLookup {
        let id: String
        do {
            guard let currentID = try currentID() else { return .none }
            id = currentID
        } catch {
            return .damaged(id: SnapshotStore.currentLink, reason: "\(error)")
        }
        let directory = Path.join(root, id)
        let metadataPath = Path.join(directory, SnapshotStore.metadataFile)
        guard let bytes = try? POSIX.readFile(metadataPath, limit: 1024 * 1024) else {
            return .damaged(id: id, reason: "\(metadataPath) is missing or unreadable")
        }
        if let version = SnapshotMetadata.formatVersion(of: bytes), version > SnapshotMetadata.currentFormatVersion {
            let placeholder = Snapshot(id: id, directory: directory, metadata: SnapshotMetadata(created: Date(timeIntervalSince1970: 0), facts: .unknown, formatVersion: version))
            return .mismatched(placeholder, differences: ["snapshot format \(version) is newer than this stack-emulator understands (\(SnapshotMetadata.currentFormatVersion))"])
        }
        let metadata: SnapshotMetadata
        do {
            metadata = try SnapshotMetadata.decode(bytes)
        } catch {
            return .damaged(id: id, reason: "\(metadataPath) cannot be read: \(error)")
        }
        for file in [metadata.ramStateFile, metadata.diskLayerFile] where file.contains("/") || file.isEmpty {
            return .damaged(id: id, reason: "\(metadataPath) names a file outside the snapshot: \(file)")
        }
        let snapshot = Snapshot(id: id, directory: directory, metadata: metadata)
        for path in [snapshot.ramStatePath, snapshot.diskLayerPath] {
            guard let status = try? FileSystem.status(path), status.isRegularFile, status.size > 0 else {
                return .damaged(id: id, reason: "\(path) is missing or empty")
            }
        }
        return .usable(snapshot)
    }

    // MARK: quarantine and removal

    /// Moves snapshot `id` to `quarantine/` with `reason` recorded, so it is kept for
    /// diagnosis but never tried again. Returns its new directory. `id` may be
    /// `current` (a `.damaged` lookup of a bogus link): the link is dropped and recorded.
    @discardableResult
    public func quarantine(id: String, reason: String) throws -> String {
        guard SnapshotStore.isValidID(id) || id == SnapshotStore.currentLink else {
            throw HostError(.snapshotInvalid, "not a snapshot id: \(id)")
        }
        let quarantine = Path.join(root, SnapshotStore.quarantineDirectory)
        try FileSystem.makeDirectory(quarantine, mode: 0o755)
        var destination = Path.join(quarantine, id)
        var attempt = 1
        while try FileSystem.status(destination) != nil {
            attempt += 1
            destination = Path.join(quarantine, "\(id)-\(attempt)")
        }
        let source = Path.join(root, id)
        if id == SnapshotStore.currentLink || (try? currentID()) == id {
            try FileSystem.removeFile(Path.join(root, SnapshotStore.currentLink))
        }
        if id != SnapshotStore.currentLink, try FileSystem.status(source) != nil {
            try FileSystem.rename(source, destination)
        } else {
            try FileSystem.makeDirectory(destination, mode: 0o755)
        }
        let record = QuarantineRecord(reason: reason, quarantined: Date())
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let bytes = try HostError.translating { Array(try encoder.encode(record)) }
        try HostError.translating { try AtomicFile(path: Path.join(destination, SnapshotStore.quarantineRecord), mode: 0o644).write(bytes) }
        return destination
    }

    /// The quarantined snapshots and why each was set aside.
    public func quarantined() throws -> [QuarantinedSnapshot] {
        let quarantine = Path.join(root, SnapshotStore.quarantineDirectory)
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try FileSystem.contents(of: quarantine).map { name in
            let directory = Path.join(quarantine, name)
            let bytes = try? POSIX.readFile(Path.join(directory, SnapshotStore.quarantineRecord))
            return QuarantinedSnapshot(directory: directory, record: bytes.flatMap { try? decoder.decode(QuarantineRecord.self, from: Data($0)) })
        }
    }

    /// Deletes snapshot `id` (and `current` if it pointed there).
    public func remove(id: String) throws {
        guard SnapshotStore.isValidID(id) else {
            throw HostError(.snapshotInvalid, "not a snapshot id: \(id)")
        }
        if (try? currentID()) == id {
            try FileSystem.removeFile(Path.join(root, SnapshotStore.currentLink))
        }
        try FileSystem.removeTree(Path.join(root, id))
    }

    // MARK: internals

    /// The id `current` points to, nil when there is no link.
    func currentID() throws -> String? {
        guard let target = try FileSystem.linkTarget(Path.join(root, SnapshotStore.currentLink)) else { return nil }
        guard SnapshotStore.isValidID(target) else {
            throw HostError(.snapshotInvalid, "\(Path.join(root, SnapshotStore.currentLink)) points to \(target), not a snapshot directory")
        }
        return target
    }

    /// A new symlink renamed over `current`: readers see the old or the new target.
    private func pointCurrent(at id: String) throws {
        let temporary = Path.join(root, ".\(SnapshotStore.currentLink).tmp-\(RandomToken.hex(bytes: 4))")
        try FileSystem.symbolicLink(id, at: temporary)
        do {
            try FileSystem.rename(temporary, Path.join(root, SnapshotStore.currentLink))
        } catch {
            try? FileSystem.removeFile(temporary)
            throw error
        }
        try HostError.translating { try AtomicFile.syncDirectory(root) }
    }

    static func isValidID(_ id: String) -> Bool {
        id.hasPrefix(idPrefix) && !id.contains("/") && !id.hasSuffix(partialSuffix) && id != "." && id != ".."
    }
}

/// A snapshot set aside by `SnapshotStore.quarantine`.
public struct QuarantinedSnapshot: Sendable, Equatable {
    public var directory: String
    /// nil when `quarantine.json` is missing or unreadable.
    public var record: QuarantineRecord?
}

/// Why and when a snapshot was quarantined (`quarantine.json`).
public struct QuarantineRecord: Sendable, Equatable, Codable {
    public var reason: String
    public var quarantined: Date
}

extension HostFacts {
    /// Stand-in for a snapshot whose metadata this binary cannot decode.
    static let unknown = HostFacts(qemuVersion: "?", machine: "?", accelerator: .tcg, cpuModel: "?", memoryMiB: 0, cpus: 0,
                                   deviceLayout: DeviceLayoutFingerprint(arguments: []),
                                   baseImage: BaseImageFingerprint(size: 0, modificationSeconds: 0, modificationNanoseconds: 0),
                                   portConfiguration: "?", bootFiles: nil)
}
