import Logging
import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The emulator state machine behind `stack-emulator`: `start`, `stop`, `status`,
/// `reset`, `capture`, `bench` (§4.10–4.16), with the same environment contract as the
/// shell (read into `EmulatorConfiguration` by the executable).
///
/// `start` and `capture` hold the run directory's lock (`StartLock`) throughout, so two
/// invocations never race (§5.4 #12); `stop` and `reset` wait briefly for it.
///
/// ```
/// start ─ lock ─ running? ─yes─▶ session record proves it? ─yes─▶ healthy? ─yes─▶ done (already running)
///           │                          └─no: stop it ─┐             └─no──▶ error: stop it first
///           no ◀──────────────────────────────────────┘
///           │
///           ports free ─ setup ─ snapshot usable? ─yes─▶ ResumeFlow ─ok─▶ record ─▶ done
///                                   │                      └─fail─▶ quarantine if the
///                                   no                               snapshot is to blame
///                                   ▼                                      │
///                              ColdBootFlow ─ok─▶ record ─▶ done ◀─────────┘ (after a cold boot)
/// ```
///
/// The session record (`SessionRecord`) is the last thing a start writes; a VM without
/// one for its very QEMU process is never called green. An interrupt (task
/// cancellation) anywhere from the launch to the record stops what was launched
/// (`stoppingOwnVMsOnInterrupt`).
public struct Emulator: Sendable {
    public let configuration: EmulatorConfiguration
    public let host: HostPlatform
    public let console: EmulatorConsole
    /// Sees every phase start and end (bench, tests).
    public let observer: (any PhaseObserver)?
    public let logger: Logger

    public init(configuration: EmulatorConfiguration, host: HostPlatform, console: EmulatorConsole,
                observer: (any PhaseObserver)? = nil, logger: Logger = Logger(label: "stack-emulator")) {
        self.configuration = configuration
        self.host = host
        self.console = console
        self.observer = observer
        self.logger = logger
    }

    var context: EmulatorContext {
        EmulatorContext(configuration: configuration, host: host, console: console, observer: observer, logger: logger)
    }

    /// How long `stop`/`reset` wait for a `start` or `capture` holding the lock.
    public static let lockWait: Duration = .seconds(5)

    // MARK: start

    public struct StartReport: Sendable {
        public enum Path: String, Sendable, Codable {
            case resumed
            case coldBoot = "cold-boot"
            case alreadyRunning = "already-running"
        }

        public var path: Path
        /// Why the snapshot was not used or its resume failed (nil when resumed or none existed).
        public var snapshotSkipped: String?
        /// The four secrets now live, nil when not rotated (`EMULATOR_NO_ROTATION`, already running).
        public var secrets: InternalSecrets?
        public var phases: [PhaseTimings.Entry]
        public var total: Duration
    }

    public func start() async throws -> StartReport {
        let context = self.context
        let timings = PhaseTimings(observer: observer)
        let paths = context.paths
        let lock = try await StartLock.acquire(path: paths.lockFile)
        defer { lock.release() }

        switch QEMUPidFile(path: paths.pidFile).lookup() {
        case .running(let process):
            switch SessionRecord.verdict(for: process, paths: paths, acceptingUnrotated: configuration.noRotation) {
            case .proven:
                return try await alreadyRunning(process, timings: timings)
            case .unproven(let why):
                console.warn("The emulator VM (pid \(process.pid)) \(why); stopping it and starting afresh.")
                _ = await StopFlow(context: context).stop(process)
                try paths.removeRuntimeFiles()
            }
        case .notRunning(.noPidFile):
            break
        case .notRunning(let reason):
            console.warn("Ignoring a stale pid file: \(reason).")
            try paths.removeRuntimeFiles()
        }
        return try await stoppingOwnVMsOnInterrupt("start") { try await startAfresh(timings: timings) }
    }

    /// Everything after the running-VM check: no VM runs when this begins.
    private func startAfresh(timings: PhaseTimings) async throws -> StartReport {
        let context = self.context
        let paths = context.paths
        try PortAvailability.ensureFree(configuration.ports)
        try paths.prepareVMDirectory()

        console.info("Starting QEMU local emulator")
        let setup = try await timings.measure(.preflight) { try await MachineSetup.gather(context) }
        console.info("Arch: \(configuration.architecture.rawValue) | Accel: \(setup.accelerator.accelerator.rawValue)")
        console.info("Ports: Dashboard=\(configuration.ports.dashboard) Backend=\(configuration.ports.backend) MinIO=\(configuration.ports.minio) Inbucket=\(configuration.ports.inbucket)")
        // Whoever sets the key writes it again; a stale one must never be read. The
        // record of a previous session never describes the VM about to start.
        try FileSystem.removeFile(paths.internalPCK)
        try FileSystem.removeFile(paths.sessionRecord)

        var skipped: String?
        if let snapshot = try usableSnapshot(setup: setup, skipped: &skipped) {
            do {
                let result = try await ResumeFlow(context: context, setup: setup, timings: timings).run(snapshot)
                try await finishStart(result.process, rotated: result.secrets != nil)
                return StartReport(path: .resumed, snapshotSkipped: nil, secrets: result.secrets, phases: timings.entries, total: timings.elapsed)
            } catch let failure as ResumeFailure {
                // An interrupt is nobody's fault: no quarantine, no fallback.
                try Task.checkCancellation()
                if let fatal = failure.fatal { throw fatal }
                skipped = failure.reason
                try recoverFromFailedResume(failure, snapshot: snapshot)
            }
        }
        let result = try await ColdBootFlow(context: context, setup: setup, timings: timings).run()
        try await finishStart(result.process, rotated: result.secrets != nil)
        return StartReport(path: .coldBoot, snapshotSkipped: skipped, secrets: result.secrets, phases: timings.entries, total: timings.elapsed)
    }

    /// Records the session (the proof a later start and `status` look for), then says
    /// green. The last point where an interrupt still stops this start's VM.
    private func finishStart(_ process: QEMUProcess, rotated: Bool) async throws {
        try Task.checkCancellation()
        do {
            try SessionRecord.write(for: process, rotated: rotated, paths: context.paths)
        } catch {
            await context.discard(process)
            throw HostError((error as? HostError)?.code ?? .systemCall, "\(error); stopped the VM, which could not be recorded as started")
        }
        console.log("All services are green.")
        context.printURLs()
    }

    /// §5.4 #17: a healthy running VM is reused; a running but unhealthy one is an error
    /// (starting another would only fail on its ports).
    private func alreadyRunning(_ process: QEMUProcess, timings: PhaseTimings) async throws -> StartReport {
        let report = await HealthProbe(ports: configuration.ports, perTryTimeout: .seconds(2)).check(ServiceEndpoint.all)
        guard report.isHealthy else {
            let failing = report.unhealthy.map { "\($0.displayName): \(report.outcomes[$0].map(String.init(describing:)) ?? "?")" }
            throw HostError(.vmRunning, "The emulator VM is already running (pid \(process.pid)) but not healthy (\(failing.joined(separator: "; "))); run `stack-emulator stop` and start again")
        }
        console.log("Emulator already running (pid \(process.pid)); all services are green.")
        context.printURLs()
        return StartReport(path: .alreadyRunning, snapshotSkipped: nil, secrets: nil, phases: timings.entries, total: timings.elapsed)
    }

    /// The snapshot to resume, or nil with the reason in `skipped`.
    private func usableSnapshot(setup: MachineSetup, skipped: inout String?) throws -> Snapshot? {
        if configuration.noSnapshot {
            skipped = "EMULATOR_NO_SNAPSHOT=1"
            console.info("EMULATOR_NO_SNAPSHOT=1: cold boot.")
            return nil
        }
        let spec = setup.spec(.snapshot(incoming: true), configuration: configuration, host: host)
        let store = context.store
        switch store.currentSnapshot(matching: setup.facts(for: spec)) {
        case .usable(let snapshot):
            return snapshot
        case .none:
            skipped = "no snapshot"
            console.info("No snapshot yet: cold boot (`stack-emulator capture` once makes later starts fast).")
        case .mismatched(let snapshot, let differences):
            skipped = "snapshot does not match: " + differences.joined(separator: "; ")
            console.warn("Snapshot \(snapshot.id) was captured for a different setup (\(differences.joined(separator: "; "))); cold boot. Capture again with EMULATOR_FORCE_CAPTURE=1 stack-emulator capture.")
        case .damaged(let id, let reason):
            skipped = "snapshot damaged: \(reason)"
            console.warn("Snapshot \(id) is damaged (\(reason)); \(EmulatorWarnings.quarantined(store, id: id, reason: reason)); cold boot.")
        }
        return nil
    }

    /// After a failed resume: keep its logs, quarantine a guilty snapshot, drop the
    /// session overlay and phantoms (§4.11), say why.
    private func recoverFromFailedResume(_ failure: ResumeFailure, snapshot: Snapshot) throws {
        let paths = context.paths
        console.warn("Snapshot resume failed: \(failure.reason)")
        for (live, kept) in [(paths.serialLog, paths.failedResumeSerialLog), (paths.qemuLog, paths.failedResumeQEMULog)] {
            if (try? FileSystem.status(live)) != nil { try? FileSystem.rename(live, kept) }
        }
        if failure.snapshotAtFault {
            console.warn("Snapshot \(snapshot.id) \(EmulatorWarnings.quarantined(context.store, id: snapshot.id, reason: failure.reason)); run `stack-emulator capture` to take a new one.")
        }
        try context.overlay.discard()
        console.warn("Retrying with cold boot (logs of the failed resume: \(paths.failedResumeSerialLog), \(paths.failedResumeQEMULog))...")
    }

    // MARK: stop, reset

    public func stop() async throws {
        let lock = try await StartLock.acquire(path: context.paths.lockFile, timeout: Emulator.lockWait)
        defer { lock.release() }
        switch try await StopFlow(context: context).run() {
        case .removedStalePidFile(let reason):
            console.warn("Removed a stale pid file (\(reason)); no process was signalled.")
        case .terminated(let pid, let how):
            console.warn("The guest did not power off within \(Seconds.format(configuration.deadlines.stop)); QEMU pid \(pid) \(how == .killed ? "was killed" : "was terminated").")
        case .terminatedNotRunning(let pid):
            console.warn("The guest was not running (paused or loading a snapshot); QEMU pid \(pid) was terminated.")
        case .notRunning, .poweredOff:
            break
        }
        console.log("QEMU emulator stopped.")
    }

    /// Stops (errors reported, not fatal) and removes RUN_DIR; IMAGE_DIR stays (§4.13).
    public func reset() async throws {
        do {
            try await stop()
        } catch {
            logger.info("stop during reset: \(error)")
        }
        let lock = try await StartLock.acquire(path: context.paths.lockFile, timeout: Emulator.lockWait)
        defer { lock.release() }
        try context.paths.removeRunDirectory()
        console.log("Emulator state reset. Next start will be a fresh boot.")
    }

    // MARK: status

    public struct Status: Sendable, Equatable {
        public var vmPid: pid_t?
        /// Why the running VM is not known to run the secrets a completed start gave it
        /// (see `SessionRecord`); nil when it is, or when no VM runs.
        public var unproven: String?
        public var services: [ServiceEndpoint: Bool]

        public var vmUp: Bool { vmPid != nil }
        /// §4.14: exit 0 only when the VM and all four services are up — and the VM is
        /// the one a completed start recorded, so a VM on placeholder keys (an
        /// interrupted start or capture) is never reported as fine.
        public var allUp: Bool { vmUp && unproven == nil && ServiceEndpoint.all.allSatisfy { services[$0] == true } }
    }

    /// Probes and prints the 7-line layout (§4.14). On a terminal the dots are green/red;
    /// otherwise `●` means up and `○` down, so the state survives without colour. A VM
    /// no completed start vouches for gets one more line, on stderr.
    @discardableResult
    public func status() async -> Status {
        let process = QEMUPidFile(path: context.paths.pidFile).lookup().process
        var unproven: String?
        if let process, case .unproven(let why) = SessionRecord.verdict(for: process, paths: context.paths, acceptingUnrotated: configuration.noRotation) {
            unproven = why
        }
        let report = await HealthProbe(ports: configuration.ports, perTryTimeout: .seconds(2)).check(ServiceEndpoint.all)
        let status = Status(vmPid: process?.pid, unproven: unproven,
                            services: Dictionary(uniqueKeysWithValues: ServiceEndpoint.all.map { ($0, report.isHealthy($0)) }))
        let colour = console.output.isTerminal
        func dot(_ up: Bool) -> String {
            if colour { return up ? "\u{1B}[0;32m●\u{1B}[0m" : "\u{1B}[0;31m●\u{1B}[0m" }
            return up ? "●" : "○"
        }
        console.plain("VM:")
        console.plain("  \(dot(status.vmUp)) emulator")
        console.plain("")
        console.plain("Services:")
        for endpoint in ServiceEndpoint.all {
            let name = endpoint == .inbucket ? "Inbucket HTTP" : endpoint.displayName
            console.plain("  \(dot(status.services[endpoint] == true)) \(name) (:\(endpoint.hostPort(in: configuration.ports)))")
        }
        if let pid = status.vmPid, let unproven {
            console.error("The emulator VM (pid \(pid)) \(unproven); `stack-emulator start` replaces it.")
        }
        return status
    }

    // MARK: capture

    public enum CaptureReport: Sendable, Equatable {
        case captured(Snapshot, phases: [PhaseTimings.Entry], total: Duration)
        case alreadyCaptured(Snapshot)
    }

    public func capture() async throws -> CaptureReport {
        let lock = try await StartLock.acquire(path: context.paths.lockFile)
        defer { lock.release() }
        // Checked before anything the interrupt handling covers: a running VM is not ours.
        if case .running(let process) = QEMUPidFile(path: context.paths.pidFile).lookup() {
            throw HostError(.vmRunning, "The emulator VM is running (pid \(process.pid)); stop it first: stack-emulator stop")
        }
        let timings = PhaseTimings(observer: observer)
        return try await stoppingOwnVMsOnInterrupt("capture") {
            switch try await CaptureFlow(context: context, timings: timings).run() {
            case .captured(let snapshot): return .captured(snapshot, phases: timings.entries, total: timings.elapsed)
            case .alreadyCaptured(let snapshot): return .alreadyCaptured(snapshot)
            }
        }
    }

    // MARK: bench

    /// `stop` (silently), then `start`, timed phase by phase (§4.15 with sub-second
    /// precision, §5.4 #46).
    public func bench() async throws -> StartReport {
        console.setMuted(true)
        do {
            try await stop()
        } catch {
            logger.info("stop before bench: \(error)")
        }
        console.setMuted(false)
        let report = try await start()
        return report
    }
}
