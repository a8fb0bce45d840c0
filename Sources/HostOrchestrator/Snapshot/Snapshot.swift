import StackCore

/// A committed snapshot: a directory holding the compressed RAM state, the immutable
/// disk layer it was captured with, and `metadata.json`.
public struct Snapshot: Sendable, Equatable {
    public let id: String
    public let directory: String
    public let metadata: SnapshotMetadata

    public var ramStatePath: String { Path.join(directory, metadata.ramStateFile) }
    /// Read-only qcow2 whose backing file is the base image; each session runs on a
    /// fresh overlay above it, so the resumed RAM always meets the disk it was captured
    /// with (§5.4 #19).
    public var diskLayerPath: String { Path.join(directory, metadata.diskLayerFile) }

    /// Replaces `path` (normally VM_DIR/disk.qcow2) with a new, empty overlay on this
    /// snapshot's disk layer.
    public func createSessionOverlay(at path: String, using image: QEMUImage) async throws {
        try await image.createOverlay(at: path, backing: diskLayerPath)
    }
}

/// A snapshot being captured: a `<id>.partial` directory nothing reads until
/// `SnapshotStore.commit` renames it. It holds the store's lock until then (or until
/// `abandon`, or until it is freed).
public struct SnapshotCapture: Sendable, Equatable {
    public let id: String
    public let directory: String
    let lock: StartLock

    public static func == (lhs: SnapshotCapture, rhs: SnapshotCapture) -> Bool {
        lhs.id == rhs.id && lhs.directory == rhs.directory
    }

    /// Where the capture pipeline writes the compressed RAM state (the name is its
    /// choice; `commit` records it from the metadata).
    public func path(for file: String) -> String { Path.join(directory, file) }
    public var ramStatePath: String { path(for: SnapshotStore.defaultRAMStateFile) }
    /// The disk QEMU runs on during the capture boot, kept as the snapshot's layer.
    public var diskLayerPath: String { path(for: SnapshotStore.diskLayerFile) }

    /// Creates the capture boot's disk: an overlay on the base image.
    public func createDiskLayer(over baseImage: String, using image: QEMUImage) async throws {
        try await image.createOverlay(at: diskLayerPath, backing: baseImage)
    }
}

/// What `SnapshotStore.currentSnapshot(matching:)` found.
public enum SnapshotLookup: Sendable, Equatable {
    /// No snapshot has been committed (or the last one was removed or quarantined).
    case none
    case usable(Snapshot)
    /// Intact but made for other facts (config, QEMU, base image): not tried, kept,
    /// since changing the setting back makes it usable again.
    case mismatched(Snapshot, differences: [String])
    /// Incomplete, unreadable or missing files: the caller should quarantine it.
    case damaged(id: String, reason: String)
}
