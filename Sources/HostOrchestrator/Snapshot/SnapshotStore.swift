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
/// quarantined rather than retried on every start (§5.4 #15).
///
/// Run directories sharing IMAGE_DIR share the store, so its writers take the store's
/// own lock (`<root>.lock`, a `StartLock`): a capture holds it from `beginCapture` to
/// `commit`/`abandon` (so the leftovers it sweeps are never another live capture's),
/// `quarantine` for its few renames. Neither waits: a second capture fails at once.
public struct SnapshotStore: Sendable {
    public let root: String

    public static let defaultRAMStateFile = "ram.zst"
    public static let diskLayerFile = "disk.qcow2"
    public static let metadataFile = "metadata.json"
    public static let currentLink = "current"
    public static let quarantineDirectory = "quarantine"
    public static let quarantineRecord = "quarantine.json"
    static let partialSuffix = ".partial"
    /// metadata.json is a few KiB; anything near this is not ours.
    static let metadataLimit = 1024 * 1024
    static let idPrefix = "snapshot-"

    public init(root: String) {
        self.root = root
    }

    // MARK: capture

    /// The store's lock file, beside the store (its directory lists snapshots only).
    public var lockPath: String { root + ".lock" }

    static func lockActivity(_ root: String) -> String { "capturing a snapshot into \(root)" }

    /// Takes the store's lock (failing at once with `.lockHeld` while another capture
    /// runs), removes what interrupted captures and replaced snapshots left, and creates
    /// a fresh `<id>.partial` directory (0700). The capture holds the lock until
    /// `commit` or `abandon`.
    public func beginCapture() throws -> SnapshotCapture {
        let lock = try StartLock.tryAcquire(path: lockPath, activity: SnapshotStore.lockActivity(root))
        try FileSystem.makeDirectory(root, mode: 0o755)
        let current = (try? currentID()) ?? nil
        for name in try FileSystem.contents(of: root) where name.hasPrefix(SnapshotStore.idPrefix) && name != current {
            // Best effort: a leftover that cannot be removed (one quarantine could not
            // move, see its record) must not block every later capture.
            try? FileSystem.removeTree(Path.join(root, name))
        }
        let id = SnapshotStore.idPrefix + "\(Int64(Date().timeIntervalSince1970))-\(RandomToken.hex(bytes: 4))"
        let directory = Path.join(root, id + SnapshotStore.partialSuffix)
        try FileSystem.makeDirectory(directory, mode: 0o700)
        return SnapshotCapture(id: id, directory: directory, lock: lock)
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
        capture.lock.release()
        return Snapshot(id: capture.id, directory: directory, metadata: stored)
    }

    /// Removes an unfinished capture and releases the store.
    public func abandon(_ capture: SnapshotCapture) {
        try? FileSystem.removeTree(capture.directory)
        capture.lock.release()
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
        // Never a FIFO, device or symlink, never more than 1 MiB: read while the start
        // lock is held, so a planted FIFO must not block it (see readRegularFile).
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.readRegularFile(metadataPath, limit: SnapshotStore.metadataLimit, followLinks: false)
        } catch {
            return .damaged(id: id, reason: "\(metadataPath) is missing or unreadable: \(error)")
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
    /// diagnosis but never tried again. Returns where the record is. `id` may be
    /// `current` (a `.damaged` lookup of a bogus link): the link is dropped and recorded.
    ///
    /// Order matters (a step can fail, e.g. EACCES on the rename): the snapshot is moved,
    /// or — when it cannot be — a record naming where it stays is written first; only
    /// then is `current` unlinked. A failure before that leaves `current` as it was, so
    /// the snapshot is never left unreferenced and unrecorded. Takes the store's lock
    /// (fails with `.lockHeld` while a capture runs: that capture replaces `current`).
    @discardableResult
    public func quarantine(id: String, reason: String) throws -> String {
        guard SnapshotStore.isValidID(id) || id == SnapshotStore.currentLink else {
            throw HostError(.snapshotInvalid, "not a snapshot id: \(id)")
        }
        let lock = try StartLock.tryAcquire(path: lockPath, activity: SnapshotStore.lockActivity(root))
        defer { lock.release() }
        let quarantine = Path.join(root, SnapshotStore.quarantineDirectory)
        try FileSystem.makeDirectory(quarantine, mode: 0o755)
        var destination = Path.join(quarantine, id)
        var attempt = 1
        while try FileSystem.status(destination) != nil {
            attempt += 1
            destination = Path.join(quarantine, "\(id)-\(attempt)")
        }
        let source = Path.join(root, id)
        var record = QuarantineRecord(reason: reason, quarantined: Date())
        if id != SnapshotStore.currentLink, try FileSystem.status(source) != nil {
            do {
                try FileSystem.rename(source, destination)
            } catch {
                // Recorded where it is; `current` no longer points there, so it is not
                // tried again, and the record says where to find it.
                record.leftAt = source
                record.moveFailure = "\(error)"
                try FileSystem.makeDirectory(destination, mode: 0o755)
            }
        } else {
            try FileSystem.makeDirectory(destination, mode: 0o755)
        }
        try writeRecord(record, in: destination)
        if id == SnapshotStore.currentLink || (try? currentID()) == id {
            try FileSystem.removeFile(Path.join(root, SnapshotStore.currentLink))
            try HostError.translating { try AtomicFile.syncDirectory(root) }
        }
        return destination
    }

    private func writeRecord(_ record: QuarantineRecord, in directory: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let bytes = try HostError.translating { Array(try encoder.encode(record)) }
        try HostError.translating { try AtomicFile(path: Path.join(directory, SnapshotStore.quarantineRecord), mode: 0o644).write(bytes) }
    }

    /// The quarantined snapshots and why each was set aside.
    public func quarantined() throws -> [QuarantinedSnapshot] {
        let quarantine = Path.join(root, SnapshotStore.quarantineDirectory)
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try FileSystem.contents(of: quarantine).map { name in
            let directory = Path.join(quarantine, name)
            let bytes = try? FileSystem.readRegularFile(Path.join(directory, SnapshotStore.quarantineRecord), limit: SnapshotStore.metadataLimit,
                                                         followLinks: false)
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
    /// Where the snapshot's files stayed when they could not be moved into the
    /// quarantine (nil: they are beside this record).
    public var leftAt: String?
    /// Why the move failed.
    public var moveFailure: String?

    public init(reason: String, quarantined: Date, leftAt: String? = nil, moveFailure: String? = nil) {
        self.reason = reason
        self.quarantined = quarantined
        self.leftAt = leftAt
        self.moveFailure = moveFailure
    }
}

extension HostFacts {
    /// Stand-in for a snapshot whose metadata this binary cannot decode.
    static let unknown = HostFacts(qemuVersion: "?", machine: "?", accelerator: .tcg, cpuModel: "?", memoryMiB: 0, cpus: 0,
                                   deviceLayout: DeviceLayoutFingerprint(arguments: []),
                                   baseImage: BaseImageFingerprint(size: 0, modificationSeconds: 0, modificationNanoseconds: 0),
                                   portConfiguration: "?", bootFiles: nil)
}
