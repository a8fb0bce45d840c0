import QEMUControl
import StackCore
import StackProcess
import TestSupport
import Testing
@testable import HostOrchestrator
#if canImport(Glibc)
import Glibc
#endif

/// The emulator end to end with the demo guest under TCG: a real capture (once per
/// process, `GoldenSnapshot`), resumes with rotation through the guest's stand-ins,
/// status, stop, and every fallback. Serialized: the snapshot's facts include the host
/// ports, so all tests use the same ones, one VM at a time.
@Suite(.serialized) struct EmulatorFlowTests {
    static func isHex64(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// The first run of 64 lower-case hex digits in `text`.
    static func firstHex64(in text: String) -> String? {
        let bytes = Array(text.utf8)
        var start = 0
        while start + 64 <= bytes.count {
            let candidate = String(decoding: bytes[start..<start + 64], as: UTF8.self)
            if isHex64(candidate) { return candidate }
            start += 1
        }
        return nil
    }

    /// A test bed holding a copy of the golden snapshot.
    func bed(_ overrides: [String: String] = [:]) async throws -> (EmulatorTestBed, Snapshot) {
        let golden = try await GoldenSnapshot.shared.get()
        let bed = try EmulatorTestBed.make(golden.bed.guest, overrides: overrides)
        _ = try await bed.install(snapshot: golden.snapshot.directory)
        guard case .usable(let snapshot) = try bed.store.current() else {
            throw StackError(.systemCall, "the installed snapshot is not usable")
        }
        return (bed, snapshot)
    }

    func servedKey(_ bed: EmulatorTestBed) async throws -> String {
        try await bed.servedKey()
    }

    func internalPCK(_ bed: EmulatorTestBed) throws -> (text: String, mode: mode_t) {
        let path = try bed.paths.internalPCK
        let status = try #require(try FileSystem.status(path))
        return (String(decoding: try POSIX.readFile(path), as: UTF8.self), status.mode & 0o777)
    }

    /// §4.19-39, -37, §5.4 #19, #22: the capture committed the RAM state, the capture-time
    /// disk as a read-only layer and the facts; its STACKCFG disk had no host directory;
    /// QEMU is gone afterwards.
    @Test func captureCommitsRAMStateDiskLayerAndFacts() async throws {
        let golden = try await GoldenSnapshot.shared.get()
        let snapshot = golden.snapshot
        let metadata = snapshot.metadata
        #expect(metadata.format == .zstdStream)
        #expect(metadata.migrationCapabilities == ["events"])
        #expect((metadata.ramStateBytes ?? 0) > 16 << 20)
        #expect(metadata.facts.memoryMiB == 256 && metadata.facts.cpus == 1 && metadata.facts.accelerator == .tcg)
        #expect(metadata.facts.bootFiles?.contains("kernel ") == true)
        #expect(try FileSystem.status(snapshot.ramStatePath)!.mode & 0o777 == 0o444)
        #expect(try FileSystem.status(snapshot.diskLayerPath)!.mode & 0o777 == 0o444)
        let paths = try golden.bed.paths
        #expect(!POSIX.exists(paths.pidFile) && !POSIX.exists(paths.monitorSocket) && !POSIX.exists(paths.agentSocket))
        let runtime = try await TestShell.run("isoinfo -i \"$0\" -J -x /runtime.env", environment: nil, timeout: .seconds(20),
                                              arguments: [paths.runtimeISO])
        #expect(runtime.contains("STACK_EMULATOR_VM_DIR_HOST=\n"), "\(runtime)")
        #expect(golden.console.contains { $0.hasPrefix("Snapshot captured: ") }, "\(golden.console)")
        // §4.19-35: without EMULATOR_FORCE_CAPTURE a matching snapshot is not captured again.
        let again = try await golden.bed.emulator().capture()
        #expect(again == .alreadyCaptured(snapshot))
    }

    /// §4.19-20, -21, -22, -31, -32, -34, -36, §5.4 #17: resume with rotation, status, a
    /// second start while running, stop, and a second resume with different secrets.
    @Test func resumeRotatesFreshSecretsEachStartAndStopKeepsState() async throws {
        let (bed, snapshot) = try await bed()
        defer { bed.remove() }
        let paths = try bed.paths
        let witness = InternalPCKWitness(path: paths.internalPCK)
        let console = EmulatorConsole.collecting()
        let report = try await bed.emulator(console: console, observer: witness).start()
        #expect(report.path == .resumed)
        let secrets = try #require(report.secrets)
        let pck = secrets.publishableClientKey.unredacted

        // internal-pck held the fresh key, 0600, without newline, before the trigger ran.
        let atTrigger = try #require(witness.atStart(of: .trigger) ?? nil, "internal-pck did not exist when the trigger started")
        #expect(String(decoding: atTrigger.bytes, as: UTF8.self) == pck)
        #expect(atTrigger.mode == 0o600)
        let stored = try internalPCK(bed)
        #expect(stored.text == pck && stored.mode == 0o600 && EmulatorFlowTests.isHex64(stored.text))
        #expect(try await servedKey(bed) == pck)
        // §5.5-3: four distinct lower-case hex64 values, none a placeholder.
        let values = InternalSecrets.Name.allCases.map { secrets[$0].unredacted }
        #expect(Set(values).count == 4 && values.allSatisfy(EmulatorFlowTests.isHex64))
        #expect(InternalSecrets.Name.allCases.allSatisfy { secrets[$0].unredacted != $0.placeholder })
        let lines = console.lines.map(\.text)
        #expect(lines.contains("All services are green."))
        #expect(lines.contains("Dashboard: http://localhost:\(try bed.port(.dashboard))"))
        #expect(!lines.joined().contains(pck), "a secret was printed")
        #expect(report.phases.map(\.phase).contains(.incoming))

        // The share is mounted at /host<share> in the guest, the clock is current.
        try AtomicFile(path: Path.join(bed.share, "hello.txt")).write(Array("from the host\n".utf8))
        #expect(try await bed.guestFile("/host\(bed.share)/hello.txt") == "from the host\n")
        let guestSeconds = try await bed.withAgent { try await $0.execute("guest-get-time", returning: Int64.self) } / 1_000_000_000
        #expect(abs(guestSeconds - Int64(time(nil))) < 5)

        // §4.19-34: status through the binary: 7 lines, exit 0.
        let status = try await Command(EmulatorCLITests.binary, arguments: ["status"], environment: bed.environment).run(timeout: .seconds(30))
        #expect(status.status == .exited(0), "\(status.standardOutputText)")
        #expect(status.standardOutputText.split(separator: "\n", omittingEmptySubsequences: false).count == 9, "8 lines and the final newline")
        #expect(status.standardOutputText.hasPrefix("VM:\n  ● emulator\n\nServices:\n  ● Dashboard (:"))

        // §5.4 #17: a second start finds it running and healthy and changes nothing.
        let again = try await bed.emulator().start()
        #expect(again.path == .alreadyRunning && again.secrets == nil)
        #expect(try internalPCK(bed).text == pck)
        // §4.19-36: no capture while it runs.
        await #expect(throws: HostError.self) { try await bed.with(["EMULATOR_FORCE_CAPTURE": "1"]).emulator().capture() }

        // §4.19-32, §5.4 #10, #16: stop powers the guest off; files kept as specified.
        let process = try #require(QEMUPidFile(path: paths.pidFile).lookup().process)
        let stopConsole = EmulatorConsole.collecting()
        let stopStarted = ContinuousClock.now
        try await bed.emulator(console: stopConsole).stop()
        #expect(ContinuousClock.now - stopStarted < .seconds(20))
        #expect(!process.isRunning)
        #expect(stopConsole.lines.map(\.text) == ["QEMU emulator stopped."], "the guest should power off, not be killed")
        for gone in [paths.pidFile, paths.monitorSocket, paths.agentSocket] { #expect(!POSIX.exists(gone), "\(gone)") }
        for kept in [paths.serialLog, paths.overlayDisk, paths.runtimeISO, paths.internalPCK] { #expect(POSIX.exists(kept), "\(kept)") }

        // §4.19-22, §4.19-14: the next start is a fresh session with new secrets.
        // A second name keeps the old overlay's inode allocated, so a recreated file cannot
        // get the same inode number (freed inodes are often reused at once).
        let keeper = paths.overlayDisk + ".first-session"
        #expect(link(paths.overlayDisk, keeper) == 0)
        defer { unlink(keeper) }
        let overlayInode = try FileSystem.status(paths.overlayDisk)!.inode
        let second = try await bed.emulator().start()
        #expect(second.path == .resumed)
        let secondSecrets = try #require(second.secrets)
        for name in InternalSecrets.Name.allCases { #expect(secondSecrets[name] != secrets[name]) }
        #expect(try internalPCK(bed).text == secondSecrets.publishableClientKey.unredacted)
        #expect(try await servedKey(bed) == secondSecrets.publishableClientKey.unredacted)
        #expect(try FileSystem.status(paths.overlayDisk)!.inode != overlayInode, "a fresh overlay, not the first session's")
        #expect(try bed.store.current() == .usable(snapshot))
        try await bed.emulator().stop()
    }

    /// §4.19-23: EMULATOR_NO_ROTATION keeps the placeholders, says so loudly, and
    /// internal-pck holds the placeholder key.
    @Test func noRotationKeepsPlaceholdersWithAWarning() async throws {
        let (bed, _) = try await bed(["EMULATOR_NO_ROTATION": "1"])
        defer { bed.remove() }
        let console = EmulatorConsole.collecting()
        let witness = InternalPCKWitness(path: try bed.paths.internalPCK)
        let report = try await bed.emulator(console: console, observer: witness).start()
        #expect(report.path == .resumed && report.secrets == nil)
        #expect(!witness.phases.contains(.trigger) && !witness.phases.contains(.rotate))
        let placeholder = InternalSecrets.Name.publishableClientKey.placeholder
        #expect(try internalPCK(bed) == (placeholder, 0o600))
        #expect(try await servedKey(bed) == placeholder)
        #expect(console.lines.contains { $0.level == .warn && $0.text.contains("PUBLIC placeholder secrets") })
        try await bed.emulator().stop()
    }

    /// §4.19-17, -29, §5.4 #15, #16: a truncated RAM state fails the resume, the snapshot
    /// is quarantined (not retried), the failed resume's logs are kept, and the cold boot
    /// that follows rotates and succeeds.
    @Test func truncatedSnapshotIsQuarantinedAndColdBootFollows() async throws {
        let (bed, snapshot) = try await bed()
        defer { bed.remove() }
        let size = try FileSystem.status(snapshot.ramStatePath)!.size
        #expect(truncate(snapshot.ramStatePath, off_t(size / 3)) == 0)
        let console = EmulatorConsole.collecting()
        let report = try await bed.emulator(console: console).start()
        #expect(report.path == .coldBoot)
        #expect(report.snapshotSkipped?.contains("truncated") == true, "\(report.snapshotSkipped ?? "nil")")
        #expect(try bed.store.current() == .none)
        let quarantined = try bed.store.quarantined()
        #expect(quarantined.count == 1 && quarantined.first?.record?.reason.contains("truncated") == true)
        let paths = try bed.paths
        #expect(POSIX.exists(paths.failedResumeQEMULog) && POSIX.exists(paths.failedResumeSerialLog))
        #expect(!POSIX.exists(paths.seedPhantom), "fallback removes the phantoms")
        let secrets = try #require(report.secrets, "a cold boot rotates too (§5.4 #30)")
        #expect(try await servedKey(bed) == secrets.publishableClientKey.unredacted)
        #expect(console.lines.contains { $0.text.hasPrefix("Retrying with cold boot") })
        try await bed.emulator().stop()
    }

    /// §5.4 #21, #23: a snapshot made for other facts (here: the snapshot RAM size) is
    /// not tried at all and is kept for when the setting comes back.
    @Test func mismatchedSnapshotIsNotTriedAndKept() async throws {
        let (bed, snapshot) = try await bed(["EMULATOR_SNAPSHOT_RAM": "320"])
        defer { bed.remove() }
        let witness = InternalPCKWitness(path: try bed.paths.internalPCK)
        let report = try await bed.emulator(observer: witness).start()
        #expect(report.path == .coldBoot)
        #expect(report.snapshotSkipped?.contains("RAM (MiB) is 320, the snapshot has 256") == true, "\(report.snapshotSkipped ?? "nil")")
        #expect(!witness.phases.contains(.incoming))
        #expect(try bed.store.quarantined().isEmpty)
        #expect(try bed.store.current() == .usable(snapshot))
        try await bed.emulator().stop()
    }

    /// §5.4 #14: QEMU exiting at launch (here: the snapshot's disk layer is garbage) falls
    /// back instead of aborting, and the snapshot is quarantined with QEMU's reason.
    @Test func qemuExitingAtLaunchFallsBackToColdBoot() async throws {
        let (bed, snapshot) = try await bed()
        defer { bed.remove() }
        try FileSystem.setMode(snapshot.diskLayerPath, 0o644)
        try AtomicFile(path: snapshot.diskLayerPath).write(Array(repeating: UInt8(ascii: "x"), count: 4096))
        let report = try await bed.emulator().start()
        #expect(report.path == .coldBoot)
        #expect(report.snapshotSkipped?.contains("QEMU did not start") == true, "\(report.snapshotSkipped ?? "nil")")
        #expect(report.snapshotSkipped?.contains("Could not open backing file: Image is not in qcow2 format") == true)
        #expect(try bed.store.quarantined().count == 1)
        #expect(report.secrets != nil)
        try await bed.emulator().stop()
    }

    /// §4.19-25: a guest agent that never answers after the resume (captured with
    /// qemu-ga stopped) fails the resume within the agent deadline, quarantines the
    /// snapshot and falls back.
    @Test func silentGuestAgentFallsBackToColdBoot() async throws {
        let (bed, _) = try await bed(["EMULATOR_AGENT_TIMEOUT": "2"])
        defer { bed.remove() }
        try await DerivedSnapshot.make(in: bed, stopAgent: true)
        let started = ContinuousClock.now
        let report = try await bed.emulator().start()
        #expect(report.path == .coldBoot)
        #expect(report.snapshotSkipped?.contains("guest agent did not respond") == true, "\(report.snapshotSkipped ?? "nil")")
        #expect(try bed.store.quarantined().count == 1)
        #expect(ContinuousClock.now - started < .seconds(60))
        try await bed.emulator().stop()
    }

    /// §4.19-24: trigger-fast-rotate exiting non-zero (the snapshot's "container" is
    /// gone) fails the resume; the cold boot that follows rotates and succeeds. The
    /// snapshot itself is kept (a guest-side failure, not a damaged file).
    @Test func failingRotationFallsBackToColdBoot() async throws {
        let (bed, _) = try await bed()
        defer { bed.remove() }
        try await DerivedSnapshot.make(in: bed, guestCommand: "rm -f /run/stack/container.env")
        let report = try await bed.emulator().start()
        #expect(report.path == .coldBoot)
        #expect(report.snapshotSkipped?.contains("trigger-fast-rotate failed in the guest (exit code 1)") == true, "\(report.snapshotSkipped ?? "nil")")
        #expect(try bed.store.quarantined().isEmpty)
        #expect(try await servedKey(bed) == report.secrets?.publishableClientKey.unredacted)
        try await bed.emulator().stop()
    }

    /// §4.19-7: a taken port stops start before anything is launched.
    @Test func takenPortStopsStartBeforeLaunch() async throws {
        let (bed, _) = try await bed()
        defer { bed.remove() }
        let port = try bed.port(.minio)
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(listener) }
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = LoopbackSocket.address(port: port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0)
        listen(listener, 4)
        await #expect(throws: HostError(.portInUse, "Port \(port) is already in use. Stop any conflicting services first.", errno: EADDRINUSE)) {
            _ = try await bed.emulator().start()
        }
        #expect(!POSIX.exists(try bed.paths.pidFile))
    }

    /// §5.4 #13 (decided): a cold boot that misses its single readiness deadline stops
    /// the VM it started (the shell left it running, holding the ports).
    @Test func coldBootTimeoutStopsTheVM() async throws {
        let (bed, _) = try await bed(["EMULATOR_NO_SNAPSHOT": "1", "EMULATOR_READY_TIMEOUT": "1"])
        defer { bed.remove() }
        let console = EmulatorConsole.collecting()
        await #expect(throws: HostError.self) { _ = try await bed.emulator(console: console).start() }
        let paths = try bed.paths
        #expect(QEMUPidFile(path: paths.pidFile).lookup().process == nil)
        #expect(PortAvailability.isFree(try bed.port(.dashboard)))
        #expect(console.lines.contains { $0.text.contains("last serial console lines") })
        #expect(POSIX.exists(paths.serialLog))
    }
}

/// A snapshot with the golden one's facts but a guest altered before the capture: it
/// is resumed (share off, placeholders kept), `guestCommand` runs in it or qemu-ga is
/// stopped (SIGSTOP), and its RAM is captured into a new `current` snapshot.
enum DerivedSnapshot {
    static func make(in bed: EmulatorTestBed, guestCommand: String? = nil, stopAgent: Bool = false) async throws {
        let store = try bed.store
        guard case .usable(let golden) = store.current() else { throw StackError(.systemCall, "no snapshot to derive from") }
        // No hot-plug: a 9p device would be part of the captured state.
        let deriving = try bed.with(["EMULATOR_HOST_SHARE": "off", "EMULATOR_NO_ROTATION": "1"])
        _ = try await deriving.emulator().start()
        let paths = try bed.paths
        if let guestCommand {
            try await bed.withAgent { agent in
                _ = try await agent.exec(path: "/bin/sh", arguments: ["-c", guestCommand], deadline: .now + .seconds(20)).requireSuccess(guestCommand)
            }
        }
        if stopAgent {
            let agent = try await GuestAgentClient.connect(path: paths.agentSocket, deadline: .now + .seconds(10))
            defer { agent.close() }
            try await agent.sync(deadline: .now + .seconds(20))
            // The guest-exec child's parent is qemu-ga.
            // The agent may be stopped before it replies with the pid: no reply is fine.
            _ = try? await agent.startExec(path: "/bin/sh", arguments: ["-c", "kill -STOP $PPID"], deadline: .now + .seconds(2))
            // Until the agent stops answering.
            let deadline = ContinuousClock.now + .seconds(20)
            var silent = false
            while !silent, ContinuousClock.now < deadline {
                silent = (try? await agent.ping(deadline: .now + .milliseconds(500))) == nil
            }
            guard silent else { throw StackError(.systemCall, "qemu-ga still answers after SIGSTOP") }
        }
        let qmp = try await QMPClient.connect(path: paths.monitorSocket, deadline: .now + .seconds(10))
        let capture = try store.beginCapture()
        try await qmp.migrateSetCapabilities([MigrationCapabilityState(.events, true)])
        try await qmp.migrateSetParameters(MigrationParameters(maxBandwidth: ResumeFlow.unlimitedBandwidth))
        try await qmp.stop()
        _ = try await RAMStateTransfer().capture(qmp: qmp, to: capture.ramStatePath, deadline: .now + .seconds(60))
        try await qmp.quit()
        qmp.close()
        if let process = QEMUPidFile(path: paths.pidFile).lookup().process { _ = await process.waitForExit(timeout: .seconds(10)) }
        try paths.removeRuntimeFiles()
        try await capture.createDiskLayer(over: paths.baseImage, using: QEMUImage(searchPath: Command.defaultSearchPath))
        var metadata = golden.metadata
        metadata.created = .now
        try store.commit(capture, metadata: metadata)
    }
}
