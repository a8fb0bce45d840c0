import Foundation
import Synchronization
import StackCore
import StackProcess
import TestSupport
import Testing
@testable import HostOrchestrator
#if canImport(Glibc)
import Glibc
#endif

@Suite struct SnapshotStoreTests {
    let image = QEMUImage(searchPath: Command.defaultSearchPath)
    let host = HostPlatform(architecture: .amd64, os: .linux, kernelRelease: "test")

    struct Fixture {
        let temp: TestDirectory
        let config: EmulatorConfiguration
        let store: SnapshotStore
        let facts: HostFacts
        var paths: EmulatorPaths { config.paths }
    }

    func fixture() async throws -> Fixture {
        let temp = try TestDirectory(prefix: "hp-snap")
        let config = try EmulatorConfiguration(environment: ["EMULATOR_IMAGE_DIR": temp.file("images"), "EMULATOR_RUN_DIR": temp.file("run"),
                                                             "EMULATOR_HOST_SHARE": "off"], host: host, currentDirectory: "/")
        try FileSystem.makeDirectory(config.imageDirectory, mode: 0o755)
        try config.paths.prepareVMDirectory()
        try await image.create(at: config.paths.baseImage, sizeBytes: 64 << 20)
        let spec = MachineSpec(configuration: config, host: host, accelerator: .tcg, firmware: nil, layout: .snapshot(incoming: false))
        let facts = HostFacts(spec: spec, qemuVersion: "7.2.22", baseImage: try BaseImageFingerprint.of(config.paths.baseImage))
        return Fixture(temp: temp, config: config, store: SnapshotStore(root: config.paths.snapshotStore), facts: facts)
    }

    /// Runs the capture steps the pipeline will run: disk layer on the base, RAM state, commit.
    func capture(_ f: Fixture, ram: [UInt8] = Array("compressed ram".utf8)) async throws -> Snapshot {
        let capture = try f.store.beginCapture()
        try await capture.createDiskLayer(over: f.paths.baseImage, using: image)
        try AtomicFile(path: capture.ramStatePath).write(ram)
        return try f.store.commit(capture, metadata: SnapshotMetadata(created: Date(), facts: f.facts))
    }

    /// §5.4 #19: the capture-time disk is kept as an immutable layer; each session gets
    /// a fresh overlay on it, and the chain is session → layer → base.
    @Test func committedSnapshotBacksFreshSessionOverlays() async throws {
        let f = try await fixture()
        defer { f.temp.remove() }
        #expect(f.store.currentSnapshot(matching: f.facts) == .none)

        let snapshot = try await capture(f)
        guard case .usable(let found) = f.store.currentSnapshot(matching: f.facts) else {
            Issue.record("committed snapshot not usable: \(f.store.currentSnapshot(matching: f.facts))")
            return
        }
        #expect(found == snapshot)
        #expect(try FileSystem.status(snapshot.diskLayerPath)!.mode & 0o777 == 0o444)
        #expect(try FileSystem.status(snapshot.ramStatePath)!.mode & 0o777 == 0o444)

        try await snapshot.createSessionOverlay(at: f.paths.overlayDisk, using: image)
        let chain = try await image.info(f.paths.overlayDisk)
        #expect(chain.map(\.format) == ["qcow2", "qcow2", "qcow2"])
        #expect(chain[0].fullBackingFilename == snapshot.diskLayerPath)
        #expect(chain[0].backingFilenameFormat == "qcow2")
        #expect(chain[1].filename == snapshot.diskLayerPath)
        #expect(chain[1].fullBackingFilename == f.paths.baseImage)
        #expect(chain[2].filename == f.paths.baseImage && chain[2].backingFilename == nil)
        #expect(chain[0].virtualSize == 64 << 20)

        // §4.19-14: the next session replaces the overlay with a new file. (The old one
        // is held open so its inode number cannot be recycled for the new one.)
        let before = try #require(try FileSystem.status(f.paths.overlayDisk))
        let held = try POSIX.open(f.paths.overlayDisk, O_RDONLY)
        defer { POSIX.close(held) }
        try await snapshot.createSessionOverlay(at: f.paths.overlayDisk, using: image)
        let after = try #require(try FileSystem.status(f.paths.overlayDisk))
        #expect(before.inode != after.inode)
    }

    @Test func metadataRecordsEveryFactAsJSON() async throws {
        let f = try await fixture()
        defer { f.temp.remove() }
        let snapshot = try await capture(f)
        let bytes = try POSIX.readFile(Path.join(snapshot.directory, "metadata.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        #expect(json["formatVersion"] as? Int == 1)
        #expect(json["ramStateFile"] as? String == "ram.zst")
        #expect(json["diskLayerFile"] as? String == "disk.qcow2")
        #expect((json["created"] as? String)?.hasSuffix("Z") == true)
        let facts = try #require(json["facts"] as? [String: Any])
        #expect(Set(facts.keys) == ["qemuVersion", "machine", "accelerator", "cpuModel", "memoryMiB", "cpus", "deviceLayout", "baseImage", "portConfiguration"])
        #expect(facts["accelerator"] as? String == "tcg")
        #expect(facts["memoryMiB"] as? Int == 4096)
        #expect(facts["portConfiguration"] as? String == "prefix=81;dashboard=26700;backend=26701;minio=26702;inbucket=26703")
        #expect(snapshot.metadata == (try SnapshotMetadata.decode(bytes)))
    }

    /// A half-written snapshot is never used: nothing is visible before commit, and a
    /// commit with missing parts publishes nothing.
    @Test func incompleteCaptureIsNeverPublished() async throws {
        let f = try await fixture()
        defer { f.temp.remove() }
        do {
            let capture = try f.store.beginCapture()
            #expect(capture.directory.hasSuffix(".partial"))
            try await capture.createDiskLayer(over: f.paths.baseImage, using: image)
            #expect(f.store.current() == .none)
            #expect(throws: HostError.self) { try f.store.commit(capture, metadata: SnapshotMetadata(created: Date(), facts: f.facts)) }
            #expect(f.store.current() == .none)
        }
        // (The capture is gone, as if its process had died: the store's lock is free.)
        // The next capture sweeps the leftover.
        let next = try f.store.beginCapture()
        #expect(try FileSystem.contents(of: f.store.root) == [Path.lastComponent(of: next.directory)])
        f.store.abandon(next)
        #expect(try FileSystem.contents(of: f.store.root).isEmpty)
    }

    /// §5.4 #21, §5.4 #23: a snapshot made for other facts is not tried, and is kept.
    @Test func mismatchedFactsAreReportedNotUsed() async throws {
        let f = try await fixture()
        defer { f.temp.remove() }
        let snapshot = try await capture(f)
        var now = f.facts
        now.memoryMiB = 2048
        now.portConfiguration = try PortConfiguration(prefix: "91", dashboard: 1, backend: 2, minio: 3, inbucket: 4).fingerprint
        now.qemuVersion = "8.2.0"
        guard case .mismatched(let found, let differences) = f.store.currentSnapshot(matching: now) else {
            Issue.record("expected a mismatch")
            return
        }
        #expect(found.id == snapshot.id)
        #expect(differences.contains("RAM (MiB) is 2048, the snapshot has 4096"))
        #expect(differences.contains("QEMU version is 8.2.0, the snapshot has 7.2.22"))
        #expect(differences.contains { $0.hasPrefix("port configuration is prefix=91") })
        #expect(differences.count == 3)
        // A changed base image (pull) also disqualifies it.
        try await TestShell.run("touch -d '2001-01-01' '\(f.paths.baseImage)'")
        var pulled = f.facts
        pulled.baseImage = try BaseImageFingerprint.of(f.paths.baseImage)
        #expect(f.store.currentSnapshot(matching: pulled) != .usable(snapshot))
        #expect(f.store.current() == .usable(snapshot), "kept for when the settings change back")
    }

    /// §5.4 #15: a damaged snapshot is quarantined with its reason and never tried again.
    @Test func damagedSnapshotIsQuarantinedWithItsReason() async throws {
        let f = try await fixture()
        defer { f.temp.remove() }
        let snapshot = try await capture(f)
        try FileSystem.removeFile(snapshot.ramStatePath)
        guard case .damaged(let id, let reason) = f.store.currentSnapshot(matching: f.facts) else {
            Issue.record("missing RAM state must read as damaged")
            return
        }
        #expect(id == snapshot.id && reason.contains("ram.zst"))
        let moved = try f.store.quarantine(id: id, reason: "resume failed: \(reason)")
        #expect(f.store.currentSnapshot(matching: f.facts) == .none)
        #expect(try FileSystem.status(Path.join(moved, "disk.qcow2")) != nil, "kept for diagnosis")
        let listed = try f.store.quarantined()
        #expect(listed.count == 1)
        #expect(listed.first?.record?.reason.hasPrefix("resume failed:") == true)
        // A later capture does not sweep the quarantine.
        _ = try await capture(f)
        #expect(try f.store.quarantined().count == 1)
    }

    @Test func unreadableMetadataAndBogusLinksAreDamaged() async throws {
        let f = try await fixture()
        defer { f.temp.remove() }
        let snapshot = try await capture(f)
        try FileSystem.setMode(Path.join(snapshot.directory, "metadata.json"), 0o644)
        try AtomicFile(path: Path.join(snapshot.directory, "metadata.json")).write(Array("{\"formatVersion\": 1}".utf8))
        guard case .damaged = f.store.current() else { Issue.record("truncated metadata"); return }

        try AtomicFile(path: Path.join(snapshot.directory, "metadata.json")).write(Array("{\"formatVersion\": 99}".utf8))
        guard case .mismatched(_, let differences) = f.store.current() else { Issue.record("future format"); return }
        #expect(differences.first?.contains("newer") == true)

        try FileSystem.removeFile(Path.join(f.store.root, "current"))
        try FileSystem.symbolicLink("../../etc", at: Path.join(f.store.root, "current"))
        guard case .damaged(let id, _) = f.store.current() else { Issue.record("bogus link"); return }
        try f.store.quarantine(id: id, reason: "bogus link")
        #expect(f.store.current() == .none)
    }

    /// A forced re-capture replaces the current snapshot atomically and drops the old one.
    @Test func recaptureReplacesAndRemoves() async throws {
        let f = try await fixture()
        defer { f.temp.remove() }
        let first = try await capture(f, ram: [1])
        let second = try await capture(f, ram: [2])
        #expect(first.id != second.id)
        #expect(f.store.current() == .usable(second))
        #expect(try FileSystem.status(first.directory) == nil)
        try f.store.remove(id: second.id)
        #expect(f.store.current() == .none)
        #expect(try FileSystem.contents(of: f.store.root).isEmpty)
        #expect(throws: HostError.self) { try f.store.remove(id: "../images") }
    }

    /// Issue 12: metadata.json is read while the start lock is held, so anything but a
    /// small regular file reads as damaged at once — a FIFO must not block the open, a
    /// symlink is not followed, a huge file is refused by its size.
    @Test func metadataThatIsNotASmallRegularFileIsDamagedAtOnce() async throws {
        let f = try await fixture()
        defer { f.temp.remove() }
        let snapshot = try await capture(f)
        try FileSystem.setMode(snapshot.directory, 0o755)
        let metadata = Path.join(snapshot.directory, SnapshotStore.metadataFile)
        let copy = f.temp.file("metadata-copy.json")
        try AtomicFile(path: copy).write(try POSIX.readFile(metadata))

        func expectDamaged(_ what: String, _ fragment: String) {
            guard case .damaged(let id, let reason) = f.store.current() else {
                Issue.record("\(what): not damaged: \(f.store.current())")
                return
            }
            #expect(id == snapshot.id)
            #expect(reason.contains(fragment), "\(what): \(reason)")
        }

        try FileSystem.removeFile(metadata)
        #expect(mkfifo(metadata, 0o644) == 0)
        // Should the open block after all, a writer ends it (and the test fails) after 20 s.
        let watchdog = FIFOWatchdog(path: metadata, after: .seconds(20))
        expectDamaged("a FIFO", "is not a regular file (FIFO)")
        #expect(!watchdog.fired, "reading the FIFO blocked")
        watchdog.cancel()

        try FileSystem.removeFile(metadata)
        try FileSystem.symbolicLink(copy, at: metadata)
        expectDamaged("a symlink to a good copy", "metadata.json")

        try FileSystem.removeFile(metadata)
        try FileSystem.symbolicLink("/dev/zero", at: metadata)
        expectDamaged("a symlink to a device", "metadata.json")

        try FileSystem.removeFile(metadata)
        try FileSystem.makeDirectory(metadata, mode: 0o755)
        expectDamaged("a directory", "is not a regular file (directory)")

        try FileSystem.removeTree(metadata)
        let fd = try POSIX.open(metadata, O_WRONLY | O_CREAT, mode: 0o644)
        #expect(ftruncate(fd, 64 << 20) == 0)
        POSIX.close(fd)
        expectDamaged("a 64 MiB file", "more than the \(SnapshotStore.metadataLimit) expected")

        try FileSystem.removeFile(metadata)
        try AtomicFile(path: metadata).write(try POSIX.readFile(copy))
        #expect(f.store.current() == .usable(snapshot))
    }

    /// Issue 12: quarantine never leaves a snapshot unreferenced and unrecorded. When the
    /// move fails (here EXDEV: `quarantine/` is on another file system; EACCES for an
    /// unprivileged user behaves alike), the record says where the snapshot stayed and
    /// only then is `current` dropped; when not even a record can be written, `current`
    /// stays as it was.
    @Test func quarantineRecordsBeforeItUnlinksCurrent() async throws {
        let f = try await fixture()
        defer { f.temp.remove() }
        let snapshot = try await capture(f)
        let elsewhere = try TestDirectory(prefix: "hp-quarantine", base: "/dev/shm")
        defer { elsewhere.remove() }
        let quarantine = Path.join(f.store.root, SnapshotStore.quarantineDirectory)
        try FileSystem.symbolicLink(elsewhere.path, at: quarantine)

        let recorded = try f.store.quarantine(id: snapshot.id, reason: "resume failed: test")
        #expect(f.store.current() == .none)
        #expect(POSIX.exists(snapshot.ramStatePath), "the snapshot stays where it was")
        let listed = try f.store.quarantined()
        #expect(listed.count == 1 && listed.first?.directory == recorded)
        let record = try #require(listed.first?.record)
        #expect(record.reason == "resume failed: test")
        #expect(record.leftAt == snapshot.directory)
        #expect(record.moveFailure?.contains("Invalid cross-device link") == true, "\(record.moveFailure ?? "nil")")

        // Nowhere to record: `current` is kept, and the error says why.
        let second = try await capture(f)
        try FileSystem.removeFile(quarantine)
        try AtomicFile(path: quarantine).write([0])
        #expect(throws: HostError.self) { try f.store.quarantine(id: second.id, reason: "resume failed: again") }
        #expect(f.store.current() == .usable(second))
        #expect(POSIX.exists(second.ramStatePath))
    }

    /// Issue 12: captures of different run directories share the store; the store's
    /// lock makes a second capture (and a quarantine) fail at once instead of sweeping
    /// the first one's `.partial`, and is free again after commit or abandon.
    @Test func aCaptureHoldsTheStoreUntilCommitOrAbandon() async throws {
        let f = try await fixture()
        defer { f.temp.remove() }
        let first = try f.store.beginCapture()
        do {
            _ = try f.store.beginCapture()
            Issue.record("two captures at once")
        } catch let error as HostError {
            #expect(error.code == .lockHeld)
            #expect(error.message.contains("is already capturing a snapshot into \(f.store.root)"), "\(error.message)")
        }
        #expect(POSIX.exists(first.directory))
        #expect(throws: HostError.self) { try f.store.quarantine(id: SnapshotStore.currentLink, reason: "test") }
        f.store.abandon(first)
        #expect(!POSIX.exists(first.directory))

        let snapshot = try await capture(f)
        #expect(f.store.current() == .usable(snapshot))
        // Committed: the store is free for the next capture.
        f.store.abandon(try f.store.beginCapture())
    }
}

/// Opens a FIFO for writing after a delay unless cancelled: a reader blocked in open(2)
/// is then released, so a regression fails the test instead of hanging it.
final class FIFOWatchdog: Sendable {
    private let state = Mutex<(cancelled: Bool, fired: Bool)>((false, false))

    init(path: String, after delay: Duration) {
        BlockingCall.detach { [self] in
            var remaining = delay
            while remaining > .zero {
                if state.withLock({ $0.cancelled }) { return }
                usleep(50_000)
                remaining -= .milliseconds(50)
            }
            let fire = state.withLock { state in
                if state.cancelled { return false }
                state.fired = true
                return true
            }
            guard fire else { return }
            let fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            if fd >= 0 { close(fd) }
        }
    }

    var fired: Bool { state.withLock { $0.fired } }
    func cancel() { state.withLock { $0.cancelled = true } }
}
