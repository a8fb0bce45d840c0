import Foundation
import StackCore
import StackProcess
import TestSupport
import Testing
@testable import HostOrchestrator

@Suite struct OverlayDiskTests {
    let image = QEMUImage(searchPath: Command.defaultSearchPath)

    func paths(_ temp: TestDirectory) throws -> EmulatorPaths {
        let paths = EmulatorPaths(imageDirectory: temp.file("images"), runDirectory: temp.file("run"), architecture: .amd64)
        try FileSystem.makeDirectory(paths.imageDirectory, mode: 0o755)
        try paths.prepareVMDirectory()
        return paths
    }

    /// §4.19-15: reuse on a matching fingerprint, recreate when the base changed.
    @Test func coldBootReusesTheOverlayUntilTheBaseImageChanges() async throws {
        let temp = try TestDirectory(prefix: "hp-ovl")
        defer { temp.remove() }
        let paths = try paths(temp)
        let overlay = OverlayDisk(paths: paths, image: image)
        do {
            _ = try await overlay.prepareForColdBoot()
            Issue.record("no base image")
        } catch let error as HostError {
            #expect(error.message.contains(paths.baseImage) && error.message.contains("stack emulator pull"))
        }
        try await image.create(at: paths.baseImage, sizeBytes: 32 << 20)
        #expect(try await overlay.prepareForColdBoot() == .created)
        #expect(try await image.info(paths.overlayDisk)[0].fullBackingFilename == paths.baseImage)
        let first = try #require(try FileSystem.status(paths.overlayDisk))
        #expect(try await overlay.prepareForColdBoot() == .reused)
        #expect(try FileSystem.status(paths.overlayDisk) == first, "reused means untouched")

        try await TestShell.run("touch -d '2001-01-01' '\(paths.baseImage)'")
        #expect(try await overlay.prepareForColdBoot() == .recreated)
        #expect(BaseImageFingerprint.stored(at: paths.overlayFingerprint) == (try BaseImageFingerprint.of(paths.baseImage)))
    }

    /// A snapshot session's overlay (backed by the snapshot's layer) is never reused by
    /// a cold boot; fallback removes overlay, fingerprint and phantoms (§4.19-29).
    @Test func snapshotSessionOverlaysAreNotReusedColdAndFallbackDiscards() async throws {
        let temp = try TestDirectory(prefix: "hp-ovl")
        defer { temp.remove() }
        let paths = try paths(temp)
        try await image.create(at: paths.baseImage, sizeBytes: 32 << 20)
        let store = SnapshotStore(root: paths.snapshotStore)
        let capture = try store.beginCapture()
        try await capture.createDiskLayer(over: paths.baseImage, using: image)
        try AtomicFile(path: capture.ramStatePath).write([1])
        let facts = HostFacts.unknown
        let snapshot = try store.commit(capture, metadata: SnapshotMetadata(created: Date(), facts: facts))

        let overlay = OverlayDisk(paths: paths, image: image)
        #expect(try await overlay.prepareForColdBoot() == .created)
        try await overlay.prepareForSnapshotSession(snapshot)
        #expect(try await image.info(paths.overlayDisk)[0].fullBackingFilename == snapshot.diskLayerPath)
        #expect(!POSIX.exists(paths.overlayFingerprint))
        #expect(try await overlay.prepareForColdBoot() == .recreated)
        #expect(try await image.info(paths.overlayDisk)[0].fullBackingFilename == paths.baseImage)

        try PhantomDisk.ensure(at: paths.seedPhantom)
        try PhantomDisk.ensure(at: paths.bundlePhantom)
        try overlay.discard()
        for path in [paths.overlayDisk, paths.overlayFingerprint, paths.seedPhantom, paths.bundlePhantom] {
            #expect(!POSIX.exists(path), "\(path)")
        }
        #expect(store.current() == .usable(snapshot), "fallback keeps the snapshot")
    }

    /// §4.19-32, §4.19-33 (file side): stop keeps logs, overlay and ISO; reset removes RUN_DIR only.
    @Test func stopAndResetRemoveTheRightFiles() throws {
        let temp = try TestDirectory(prefix: "hp-rm")
        defer { temp.remove() }
        let paths = try paths(temp)
        for path in [paths.pidFile, paths.monitorSocket, paths.agentSocket, paths.serialLog, paths.qemuLog, paths.overlayDisk, paths.runtimeISO, paths.internalPCK, paths.baseImage] {
            try AtomicFile(path: path).write([1])
        }
        try paths.removeRuntimeFiles()
        #expect(!POSIX.exists(paths.pidFile) && !POSIX.exists(paths.monitorSocket) && !POSIX.exists(paths.agentSocket))
        for kept in [paths.serialLog, paths.qemuLog, paths.overlayDisk, paths.runtimeISO, paths.internalPCK] {
            #expect(POSIX.exists(kept), "\(kept)")
        }
        try paths.removeRunDirectory()
        #expect(!POSIX.exists(paths.runDirectory))
        #expect(POSIX.exists(paths.baseImage))
    }

    @Test func serialLogTailReturnsTheLastLines() throws {
        let temp = try TestDirectory(prefix: "hp-tail")
        defer { temp.remove() }
        let paths = try paths(temp)
        #expect(paths.serialLogTail().isEmpty)
        let text = (1...100).map { "line \($0)\r" }.joined(separator: "\n") + "\n"
        try AtomicFile(path: paths.serialLog).write(Array(text.utf8))
        #expect(paths.serialLogTail() == (61...100).map { "line \($0)" })
        // 20 bytes reach into line 98: that partial line is dropped.
        #expect(LogTail.lastLines(of: paths.serialLog, count: 3, window: 20) == ["line 99", "line 100"])
    }
}

@Suite struct AcceleratorSelectionTests {
    /// The wired selection on this host: kvm exactly when its probe says it runs a
    /// guest (here: a nested /dev/kvm that does not), the verdict cached in RUN_DIR.
    @Test func choosesFromTheProbeAndCachesTheVerdict() async throws {
        let temp = try TestDirectory(prefix: "hp-sel")
        defer { temp.remove() }
        let host = try HostPlatform.detect()
        let config = try EmulatorConfiguration(environment: ["EMULATOR_IMAGE_DIR": temp.file("i"), "EMULATOR_RUN_DIR": temp.file("r")],
                                               host: host, currentDirectory: "/")
        let qemu = QEMUBinary(architecture: config.architecture, searchPath: Command.defaultSearchPath)
        let version = try await qemu.version()
        let choice = await AcceleratorPolicy.choose(for: config, host: host, qemu: qemu, qemuVersion: version)
        let cached = AcceleratorVerdictCache(path: config.paths.acceleratorVerdicts).verdict(for: .kvm, qemuVersion: version, kernelRelease: host.kernelRelease)
        let verdict = try #require(cached)
        #expect(choice.accelerator == (verdict.usable ? .kvm : .tcg), "\(choice.reason)")
        #expect(choice.reason.contains(verdict.detail))

        let started = ContinuousClock.now
        let again = await AcceleratorPolicy.choose(for: config, host: host, qemu: qemu, qemuVersion: version)
        #expect(again == choice)
        #expect(ContinuousClock.now - started < .milliseconds(1000), "second choice comes from the cache")

        var overridden = config
        overridden.acceleratorOverride = .tcg
        #expect(await AcceleratorPolicy.choose(for: overridden, host: host, qemu: qemu, qemuVersion: version).accelerator == .tcg)
    }
}
