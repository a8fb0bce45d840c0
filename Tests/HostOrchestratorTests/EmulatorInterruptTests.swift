import QEMUControl
import StackCore
import StackProcess
import TestSupport
import Testing
@testable import HostOrchestrator
#if canImport(Glibc)
import Glibc
#endif

/// Interrupted and killed `stack-emulator start`/`capture` processes (the real binary,
/// the demo guest under TCG). Part of `EmulatorFlowTests`, so these run one VM at a
/// time on the suite's ports (the golden snapshot's facts include them).
extension EmulatorFlowTests {
    /// When to interrupt: once `marker` is on stdout, after `delay`.
    struct Moment: Sendable, CustomStringConvertible {
        var marker: String
        var delay: Duration
        var signal: Int32 = SIGINT
        /// To the process group, like a terminal's Ctrl-C (which also reaches the
        /// children left in the group), instead of the process alone.
        var toGroup = false

        var description: String {
            "\(signal == SIGINT ? "SIGINT" : "SIGTERM")\(toGroup ? " to the group" : "") \(delay) after \"\(marker)\""
        }
    }

    static let placeholderKey = InternalSecrets.Name.publishableClientKey.placeholder

    /// The one `Interrupted by …` line on stderr (nil unless there is exactly one).
    static func interruptLine(_ errors: String) -> String? {
        let lines = errors.split(separator: "\n").filter { $0.contains("Interrupted by") }
        return lines.count == 1 ? String(lines[0]) : nil
    }

    /// A VM is running for `bed`: it must be one a completed start recorded, so `start`
    /// reuses it green, serving the key internal-pck holds, never the placeholder. Stops it.
    func expectLeftVMIsGreenOnTheKeyOfInternalPCK(_ bed: EmulatorTestBed, _ context: String) async throws {
        let again = try await EmulatorProcess.run(["start"], environment: bed.environment)
        #expect(again.status == .exited(0), "\(context): \(again.standardOutputText) \(again.standardErrorText)")
        #expect(again.standardOutputText.contains("already running"), "\(context): \(again.standardOutputText)")
        let served = try await bed.servedKey()
        #expect(served == (try bed.internalPCKText()), "\(context)")
        #expect(served != EmulatorFlowTests.placeholderKey, "\(context)")
        _ = try await EmulatorProcess.run(["stop"], environment: bed.environment)
    }

    /// Issue 12 (must fix 1): SIGINT — and SIGTERM — to `stack-emulator start` at many
    /// moments of a resume. Every time: exit 128+signal with one line saying what was
    /// stopped, the lock free, the snapshot neither quarantined nor replaced, no fallback
    /// to a cold boot; and either no QEMU of the run directory left, or (a signal after
    /// the start finished) a VM that the next start reuses green on the key internal-pck
    /// holds. Never green on a placeholder.
    @Test func interruptedStartStopsWhatItLaunchedAtEveryMoment() async throws {
        let (bed, snapshot) = try await bed()
        defer { bed.remove() }
        let moments: [Moment] = [
            Moment(marker: "Starting QEMU local emulator", delay: .zero),
            Moment(marker: "Snapshot found at", delay: .zero),
            Moment(marker: "Resuming from snapshot", delay: .zero),
            Moment(marker: "Resuming from snapshot", delay: .milliseconds(20), toGroup: true),
            Moment(marker: "(snapshot layout, pid", delay: .zero),
            Moment(marker: "(snapshot layout, pid", delay: .milliseconds(120)),
            Moment(marker: "VM resumed; waiting for the guest agent", delay: .zero),
            Moment(marker: "VM resumed; waiting for the guest agent", delay: .milliseconds(80)),
            Moment(marker: "Generating fresh secrets", delay: .zero),
            Moment(marker: "Generating fresh secrets", delay: .milliseconds(250)),
            Moment(marker: "Generating fresh secrets", delay: .milliseconds(120), toGroup: true),
            Moment(marker: "rotate-secrets completed.", delay: .zero),
            Moment(marker: "All services are green.", delay: .zero),
            Moment(marker: "(snapshot layout, pid", delay: .milliseconds(60), signal: SIGTERM),
            Moment(marker: "Generating fresh secrets", delay: .milliseconds(150), signal: SIGTERM),
            Moment(marker: "rotate-secrets completed.", delay: .zero, signal: SIGTERM),
        ]
        for (index, moment) in moments.enumerated() {
            let run = try EmulatorProcess.start(["start"], environment: bed.environment, logs: bed.directory, name: "start-\(index)")
            let seen = await run.waitForOutput(moment.marker)
            try await Task.sleep(for: moment.delay)
            if moment.toGroup { run.child.sendToGroup(moment.signal) } else { run.child.send(moment.signal) }
            let status = try await run.exit()
            let context = "\(moment): stdout \(run.output) stderr \(run.errors)"
            #expect(seen, "the start never printed the marker: \(context)")
            let line = EmulatorFlowTests.interruptLine(run.errors)
            let finished = run.output.contains("All services are green.")
            if finished && status == .exited(0) {
                // The start ended before the signal reached it: a normal, recorded start.
                #expect(line == nil, "\(context)")
            } else {
                #expect(status == .exited(128 + moment.signal), "\(context)")
                #expect(line?.hasPrefix("[emulator] Interrupted by \(moment.signal == SIGINT ? "SIGINT" : "SIGTERM")") == true, "\(context)")
            }
            #expect(!run.output.contains("Retrying with cold boot"), "\(context)")
            #expect(try bed.store.current() == .usable(snapshot), "\(context)")
            #expect(try bed.store.quarantined().isEmpty, "\(context)")
            #expect(try bed.lockIsFree(), "\(context)")
            if finished {
                #expect(line == nil || line?.contains("after start had finished") == true, "\(context)")
                try await expectLeftVMIsGreenOnTheKeyOfInternalPCK(bed, context)
            } else {
                #expect(line?.contains("nothing is left running") == true, "\(context)")
                #expect(try bed.qemuProcesses().isEmpty, "\(context)")
                let status = try await EmulatorProcess.run(["status"], environment: bed.environment)
                #expect(status.status == .exited(1), "\(context)")
            }
        }
        // And the next start, uninterrupted, is an ordinary resume with fresh secrets.
        let final = try await EmulatorProcess.run(["start"], environment: bed.environment)
        #expect(final.status == .exited(0), "\(final.standardOutputText) \(final.standardErrorText)")
        #expect(final.standardOutputText.contains("All services are green."))
        #expect(try await bed.servedKey() == (try bed.internalPCKText()))
        _ = try await EmulatorProcess.run(["stop"], environment: bed.environment)
    }

    /// Issue 12 (must fix 1): SIGINT/SIGTERM to `stack-emulator capture` while its VM
    /// boots and while its RAM is migrated: exit 128+signal with the one line, its VM
    /// gone, both locks free, no `.partial` left, the previous snapshot still current.
    @Test func interruptedCaptureStopsItsVMAndPublishesNothing() async throws {
        let (bed, snapshot) = try await bed(["EMULATOR_FORCE_CAPTURE": "1"])
        defer { bed.remove() }
        let moments: [Moment] = [
            Moment(marker: "Cold-booting VM to capture", delay: .zero),
            Moment(marker: "(pinned for snapshot compatibility)", delay: .milliseconds(300), signal: SIGTERM),
            Moment(marker: "(pinned for snapshot compatibility)", delay: .milliseconds(1500)),
            Moment(marker: "Capturing VM state via QMP", delay: .milliseconds(20)),
        ]
        for (index, moment) in moments.enumerated() {
            let run = try EmulatorProcess.start(["capture"], environment: bed.environment, logs: bed.directory, name: "capture-\(index)")
            let seen = await run.waitForOutput(moment.marker, timeout: .seconds(240))
            try await Task.sleep(for: moment.delay)
            run.child.send(moment.signal)
            let status = try await run.exit()
            let context = "\(moment): stdout \(run.output) stderr \(run.errors)"
            #expect(seen, "the capture never printed the marker: \(context)")
            #expect(status == .exited(128 + moment.signal), "\(context)")
            let line = EmulatorFlowTests.interruptLine(run.errors)
            // (At the first moment QEMU may not have been forked yet: "no VM had been launched yet".)
            #expect(line?.hasSuffix("; nothing is left running.") == true, "\(context)")
            if moment.marker != "Cold-booting VM to capture" {
                #expect(line?.contains("stopped the VM this capture launched (QEMU pid") == true, "\(context)")
            }
            #expect(!run.output.contains("Snapshot captured"), "\(context)")
            #expect(try bed.qemuProcesses().isEmpty, "\(context)")
            #expect(try bed.lockIsFree(), "\(context)")
            let store = try bed.store
            let storeLock = try? StartLock.tryAcquire(path: store.lockPath)
            #expect(storeLock != nil, "\(context)")
            storeLock?.release()
            #expect(try FileSystem.contents(of: store.root).allSatisfy { !$0.hasSuffix(".partial") }, "\(context)")
            #expect(store.current() == .usable(snapshot), "\(context)")
        }
    }

    /// Issue 12 (must fix 1): a VM no completed start vouches for is never called green:
    /// `status` exits 1 naming why, and the next `start` stops it and starts afresh,
    /// green on the key internal-pck holds. Such VMs: one left paused between the RAM
    /// load and `cont` (made here by pausing a VM and removing its record: a start killed
    /// during the load itself leaves nothing, QEMU exits when its stream breaks), and
    /// those of a start killed after the resume or during rotation, and of a capture
    /// killed while its VM boots.
    @Test func vmsLeftByKilledStartsAndCapturesAreReplacedNotAdopted() async throws {
        // A capture's VM killed mid-boot cannot see the ACPI button yet: a short stop
        // deadline keeps its replacement quick (how it is stopped is not checked here).
        let (bed, _) = try await bed(["EMULATOR_STOP_TIMEOUT": "4"])
        defer { bed.remove() }
        let paths = try bed.paths

        func expectReplaced(_ context: String) async throws {
            let status = try await EmulatorProcess.run(["status"], environment: bed.environment)
            #expect(status.status == .exited(1), "\(context): \(status.standardOutputText)")
            #expect(status.standardErrorText.contains("was not left by a start that completed"), "\(context): \(status.standardErrorText)")

            let start = try await EmulatorProcess.run(["start"], environment: bed.environment)
            #expect(start.status == .exited(0), "\(context): \(start.standardOutputText) \(start.standardErrorText)")
            #expect(start.standardOutputText.contains("stopping it and starting afresh"), "\(context): \(start.standardOutputText)")
            #expect(start.standardOutputText.contains("All services are green."), "\(context)")
            let served = try await bed.servedKey()
            #expect(served == (try bed.internalPCKText()) && served != EmulatorFlowTests.placeholderKey, "\(context)")
            #expect(try await EmulatorProcess.run(["status"], environment: bed.environment).status == .exited(0), "\(context)")
        }

        // Paused, no record.
        #expect(try await EmulatorProcess.run(["start"], environment: bed.environment).status == .exited(0))
        let qmp = try await QMPClient.connect(path: paths.monitorSocket, deadline: .now + .seconds(10))
        try await qmp.stop()
        #expect(try await qmp.queryStatus().running == false)
        qmp.close()
        try FileSystem.removeFile(paths.sessionRecord)
        try await expectReplaced("a paused VM")
        _ = try await EmulatorProcess.run(["stop"], environment: bed.environment)

        let kills: [(action: String, marker: String, delay: Duration)] = [
            ("start", "VM resumed; waiting for the guest agent", .zero),
            ("start", "Generating fresh secrets", .milliseconds(150)),
            ("capture", "(pinned for snapshot compatibility)", .milliseconds(500)),
        ]
        for (index, kill) in kills.enumerated() {
            let environment = kill.action == "capture" ? try bed.with(["EMULATOR_FORCE_CAPTURE": "1"]).environment : bed.environment
            let run = try EmulatorProcess.start([kill.action], environment: environment, logs: bed.directory, name: "killed-\(index)")
            #expect(await run.waitForOutput(kill.marker, timeout: .seconds(240)))
            try await Task.sleep(for: kill.delay)
            run.child.send(SIGKILL)
            _ = try await run.exit()
            let context = "\(kill.action) killed \(kill.delay) after \"\(kill.marker)\": \(run.output)"
            try #require(try bed.qemuProcesses().count == 1, "a killed \(kill.action) leaves its VM: \(context)")
            try await expectReplaced(context)
            _ = try await EmulatorProcess.run(["stop"], environment: bed.environment)
        }
    }

    /// Issue 12 (must fix 1): a VM started with EMULATOR_NO_ROTATION=1 is recorded as
    /// such: `status` and `start` accept it only when they run without rotation too;
    /// a normal start replaces it with a rotated one.
    @Test func noRotationVMIsNotAdoptedByANormalStart() async throws {
        let (bed, _) = try await bed()
        defer { bed.remove() }
        let unrotated = try bed.with(["EMULATOR_NO_ROTATION": "1"]).environment
        #expect(try await EmulatorProcess.run(["start"], environment: unrotated).status == .exited(0))
        #expect(try await bed.servedKey() == EmulatorFlowTests.placeholderKey)

        let status = try await EmulatorProcess.run(["status"], environment: bed.environment)
        #expect(status.status == .exited(1))
        #expect(status.standardErrorText.contains("runs without rotated secrets (it was started with EMULATOR_NO_ROTATION=1)"), "\(status.standardErrorText)")
        #expect(try await EmulatorProcess.run(["status"], environment: unrotated).status == .exited(0))
        let reused = try await EmulatorProcess.run(["start"], environment: unrotated)
        #expect(reused.status == .exited(0) && reused.standardOutputText.contains("already running"), "\(reused.standardOutputText)")

        let start = try await EmulatorProcess.run(["start"], environment: bed.environment)
        #expect(start.status == .exited(0), "\(start.standardOutputText) \(start.standardErrorText)")
        #expect(start.standardOutputText.contains("runs without rotated secrets"), "\(start.standardOutputText)")
        #expect(start.standardOutputText.contains("stopping it and starting afresh"))
        let served = try await bed.servedKey()
        #expect(served == (try bed.internalPCKText()) && served != EmulatorFlowTests.placeholderKey)
        #expect(try await EmulatorProcess.run(["status"], environment: bed.environment).status == .exited(0))
        _ = try await EmulatorProcess.run(["stop"], environment: bed.environment)
    }

    /// Issue 12: a `metadata.json` that is a FIFO does not hang `start` (which holds the
    /// lock while it reads it): the snapshot reads as damaged and is quarantined, and the
    /// start goes on (to a cold boot, cut short here by a 1 s readiness deadline).
    @Test func fifoMetadataDoesNotHangStart() async throws {
        let (bed, snapshot) = try await bed(["EMULATOR_READY_TIMEOUT": "1"])
        defer { bed.remove() }
        let metadata = Path.join(snapshot.directory, SnapshotStore.metadataFile)
        try FileSystem.setMode(snapshot.directory, 0o755)
        try FileSystem.removeFile(metadata)
        #expect(mkfifo(metadata, 0o644) == 0)
        let start = try await EmulatorProcess.run(["start"], environment: bed.environment, timeout: .seconds(120))
        #expect(start.status == .exited(1), "\(start.standardOutputText) \(start.standardErrorText)")
        #expect(start.standardOutputText.contains("metadata.json is not a regular file (FIFO)"), "\(start.standardOutputText)")
        #expect(start.standardOutputText.contains("quarantined in"), "\(start.standardOutputText)")
        #expect(try bed.store.current() == .none)
        #expect(try bed.store.quarantined().first?.record?.reason.contains("FIFO") == true)
        #expect(try bed.qemuProcesses().isEmpty)
    }

    /// Issue 12: two captures on one IMAGE_DIR from different run directories: the
    /// second fails at once on the store's lock and leaves the first one's `.partial`
    /// alone. The first then runs out of disk (its RAM state file is /dev/full) and
    /// says so first — ENOSPC on the snapshot file — not QEMU's "Broken pipe" that
    /// follows; its VM is stopped and nothing is published.
    @Test func secondCaptureOnTheStoreIsRefusedAndAFullDiskIsReportedFirst() async throws {
        let golden = try await GoldenSnapshot.shared.get()
        let bed = try EmulatorTestBed.make(golden.bed.guest)
        defer { bed.remove() }
        let store = try bed.store
        let first = try EmulatorProcess.start(["capture"], environment: bed.environment, logs: bed.directory, name: "capture-first")

        // The first capture's staging directory, planted with a full "disk" for its RAM state.
        var partial: String?
        let deadline = ContinuousClock.now + .seconds(120)
        while partial == nil, ContinuousClock.now < deadline {
            partial = try FileSystem.contents(of: store.root).first { $0.hasSuffix(".partial") }.map { Path.join(store.root, $0) }
            if partial == nil { try await Task.sleep(for: .milliseconds(5)) }
        }
        let staging = try #require(partial, "no .partial directory: \(first.output)")
        try FileSystem.symbolicLink("/dev/full", at: Path.join(staging, SnapshotStore.defaultRAMStateFile))

        let otherRun = Path.join(bed.directory, "other-run")
        let ports = try TestSockets.freePorts(4)
        let second = try await EmulatorProcess.run(["capture"], environment: bed.environment.merging([
            "EMULATOR_RUN_DIR": otherRun, "EMULATOR_IMAGE_DIR": bed.images, "PORT_PREFIX": TestSockets.freePrefix(),
            "EMULATOR_DASHBOARD_PORT": "\(ports[0])", "EMULATOR_BACKEND_PORT": "\(ports[1])",
            "EMULATOR_MINIO_PORT": "\(ports[2])", "EMULATOR_INBUCKET_PORT": "\(ports[3])",
        ]) { $1 }, timeout: .seconds(120))
        #expect(second.status == .exited(1))
        #expect(second.standardErrorText.contains("is already capturing a snapshot into \(store.root)"), "\(second.standardErrorText)")
        #expect(POSIX.exists(staging), "the second capture removed the first one's staging directory")

        let status = try await first.exit(timeout: .seconds(400))
        let errors = first.errors
        #expect(status == .exited(1), "\(first.output) \(errors)")
        let noSpace = try #require(errors.range(of: "No space left on device"), "\(errors)")
        if let brokenPipe = errors.range(of: "Broken pipe") {
            #expect(noSpace.lowerBound < brokenPipe.lowerBound, "\(errors)")
        }
        #expect(errors.contains("compressing the RAM state into \(staging)/ram.zst failed"), "\(errors)")
        #expect(try bed.qemuProcesses().isEmpty)
        #expect(!POSIX.exists(staging))
        #expect(store.current() == .none)
    }
}
