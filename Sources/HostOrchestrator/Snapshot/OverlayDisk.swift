/// The session disk `VM_DIR/disk.qcow2` and its rules (§4.7):
/// - cold boot: an overlay on the base image, reused while the base image is unchanged
///   (`base-image.fingerprint` matches), recreated when it changed, created if missing;
/// - snapshot session: always a fresh overlay on the snapshot's disk layer. Such an
///   overlay has no fingerprint file, so a later cold boot never reuses it (its backing
///   file lives inside a snapshot that may be replaced or quarantined);
/// - fallback: `discard` removes overlay, fingerprint and phantoms (§4.11).
public struct OverlayDisk: Sendable {
    public let paths: EmulatorPaths
    public let image: QEMUImage

    public init(paths: EmulatorPaths, image: QEMUImage) {
        self.paths = paths
        self.image = image
    }

    public enum ColdBootPreparation: Sendable, Equatable {
        /// "Reusing existing overlay disk (changes persist)".
        case reused
        case created
        /// "Base image or snapshot has changed — recreating overlay."
        case recreated
    }

    /// Throws naming the base image and `stack emulator pull` when it is missing.
    public func prepareForColdBoot() async throws -> ColdBootPreparation {
        let base = try BaseImageFingerprint.of(paths.baseImage)
        let exists = try FileSystem.status(paths.overlayDisk) != nil
        if exists, BaseImageFingerprint.stored(at: paths.overlayFingerprint) == base {
            return .reused
        }
        try FileSystem.removeFile(paths.overlayFingerprint)
        try await image.createOverlay(at: paths.overlayDisk, backing: paths.baseImage)
        try base.write(to: paths.overlayFingerprint)
        return exists ? .recreated : .created
    }

    /// A fresh overlay on `snapshot`'s disk layer (§4.19-14: always a new file). The
    /// layer is not opened here (its size is the base image's); QEMU opens the chain.
    public func prepareForSnapshotSession(_ snapshot: Snapshot) async throws {
        try FileSystem.removeFile(paths.overlayFingerprint)
        let size = try QEMUImage.qcow2VirtualSize(of: paths.baseImage)
        try await image.createOverlay(at: paths.overlayDisk, backing: snapshot.diskLayerPath, virtualSize: size)
    }

    /// After a failed resume: the overlay, its fingerprint and the phantom drives go
    /// (the snapshot itself is the store's business: quarantine or keep) (§4.19-29).
    public func discard() throws {
        for path in [paths.overlayDisk, paths.overlayFingerprint, paths.seedPhantom, paths.bundlePhantom] {
            try FileSystem.removeFile(path)
        }
    }
}
