import QEMUControl
import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a resume was given up, and whether the snapshot itself is to blame (then it is
/// quarantined, so the next start does not pay for the same failure, §5.4 #15).
struct ResumeFailure: Error, Sendable, CustomStringConvertible {
    let reason: String
    let snapshotAtFault: Bool
    /// Set when a cold boot would fail the same way (a host port taken between the
    /// check and QEMU's bind): the start fails instead of falling back.
    let fatal: HostError?

    init(_ reason: String, snapshotAtFault: Bool = false, fatal: HostError? = nil) {
        self.reason = reason
        self.snapshotAtFault = snapshotAtFault
        self.fatal = fatal
    }

    var description: String { reason }
}

/// Resumes a snapshot (§4.10 step 6), event-driven and with a deadline per step:
///
///  1. fresh session overlay on the snapshot's disk layer, phantoms, STACKCFG disk;
///  2. QEMU in the snapshot layout with `-incoming defer` (no `-kernel`);
///  3. the capture's migration capabilities + `events`, bandwidth raised;
///  4. `migrate-incoming fd:` fed by an in-process zstd decompressor; done at the
///     MIGRATION `completed` event (QMP is silent while it loads);
///  5. `cont` if the guest is not running yet;
///  6. in parallel: `device_add` of the 9p share (QMP) ‖ guest-agent sync;
///  7. secret rotation (internal-pck written before `trigger-fast-rotate` starts), with
///     `guest-set-time` sent while it runs (the resumed clock is as old as the snapshot);
///  8. in parallel: `mount-host-fs --post-resume` in the guest ‖ the four services
///     probed until all answer 200.
///
/// Any failure stops the QEMU it started and throws `ResumeFailure`.
struct ResumeFlow: Sendable {
    let context: EmulatorContext
    let setup: MachineSetup
    let timings: PhaseTimings

    /// QEMU 7.2 defaults to 128 MiB/s; the stream is local, so no limit matters.
    static let unlimitedBandwidth: Int64 = 16 << 30

    struct Result: Sendable {
        /// The VM now serving.
        var process: QEMUProcess
        var secrets: InternalSecrets?
    }

    func run(_ snapshot: Snapshot) async throws -> Result {
        let configuration = context.configuration
        let paths = context.paths
        let console = context.console
        console.log("Snapshot found at \(snapshot.directory) — fast-resume enabled.")
        let spec = setup.spec(.snapshot(incoming: true), configuration: configuration, host: context.host)

        do {
            try await timings.measure(.prepare) {
                try PhantomDisk.ensure(at: paths.seedPhantom)
                try PhantomDisk.ensure(at: paths.bundlePhantom)
                try RuntimeDisk(configuration: configuration).ensure(for: .start)
                try await context.overlay.prepareForSnapshotSession(snapshot)
            }
        } catch {
            throw ResumeFailure("preparing the session disk failed: \(error)")
        }

        console.log("Resuming from snapshot (\(snapshot.metadata.format == .zstdMappedRAM ? "mapped-ram" : "zstd stream"))...")
        let process: QEMUProcess
        do {
            process = try await timings.measure(.launch) { try await context.launcher.launch(spec) }
        } catch let error as HostError {
            // An interrupted launch says nothing about the accelerator or the snapshot.
            try Task.checkCancellation()
            throw launchFailure(error, snapshot: snapshot)
        }
        // The pinned snapshot-layout values, not EMULATOR_RAM/CPUS (§5.4 #26).
        console.info("VM: \(spec.resources.memoryMiB)MB / \(spec.resources.cpus) CPUs (snapshot layout, pid \(process.pid))")
        do {
            return Result(process: process, secrets: try await resume(snapshot, process: process))
        } catch var failure as ResumeFailure {
            if !failure.snapshotAtFault, let diagnosis = qemuDiagnosis(), diagnosis.blamesSnapshot {
                failure = ResumeFailure("\(failure.reason) (QEMU: \(diagnosis.line))", snapshotAtFault: true)
            }
            await context.discard(process)
            throw failure
        } catch {
            await context.discard(process)
            throw ResumeFailure("\(error)")
        }
    }

    /// Returns the secrets now live (nil without rotation).
    private func resume(_ snapshot: Snapshot, process: QEMUProcess) async throws -> InternalSecrets? {
        let configuration = context.configuration
        let deadlines = context.deadlines
        let console = context.console

        let qmp: QMPClient
        do {
            qmp = try await context.connectQMP()
        } catch {
            throw ResumeFailure("QEMU's monitor did not answer: \(error)")
        }
        defer { qmp.close() }
        do {
            var capabilities = [MigrationCapabilityState(.events, true)]
            for name in snapshot.metadata.migrationCapabilities ?? [] where name != MigrationCapability.events.rawValue {
                capabilities.append(MigrationCapabilityState(MigrationCapability(name), true))
            }
            try await qmp.migrateSetCapabilities(capabilities)
            try await qmp.migrateSetParameters(MigrationParameters(maxBandwidth: ResumeFlow.unlimitedBandwidth))
        } catch {
            throw ResumeFailure("QEMU refused the snapshot's migration settings: \(error)", snapshotAtFault: true)
        }

        // 4. The RAM state.
        let total = snapshot.metadata.ramStateBytes
        do {
            let transfer = RAMStateTransfer()
            let deadline = ContinuousClock.now + deadlines.incoming
            let progress: @Sendable (Int64) -> Void = { console.progress("Loading snapshot", done: $0, total: total) }
            _ = try await timings.measure(.incoming) {
                switch snapshot.metadata.format {
                case .zstdStream:
                    try await transfer.load(qmp: qmp, from: snapshot.ramStatePath, deadline: deadline, progress: progress)
                case .zstdMappedRAM:
                    try await transfer.loadMappedRAM(qmp: qmp, from: snapshot.ramStatePath,
                                                     raw: Path.join(snapshot.directory, CaptureFlow.mappedRAMCache),
                                                     deadline: deadline, progress: progress)
                }
            }
            console.finishProgress()
        } catch let failure as RAMStateTransfer.Failure {
            console.finishProgress()
            switch failure {
            case .damagedState(let why):
                throw ResumeFailure(why, snapshotAtFault: true)
            case .migrationFailed(let why), .timedOut(let why):
                throw ResumeFailure("loading the snapshot failed: \(why)")
            case .local(let why):
                throw ResumeFailure(why)
            }
        }

        // 5. Run the guest.
        try await timings.measure(.cont) {
            let status: VMStatus
            do {
                status = try await qmp.queryStatus(deadline: .now + .seconds(10))
            } catch {
                throw ResumeFailure("QEMU did not report its state after loading the snapshot: \(error)")
            }
            if status.status.isFailure {
                throw ResumeFailure("the guest is in state \(status.status) after loading the snapshot", snapshotAtFault: true)
            }
            if !status.running {
                do {
                    try await qmp.cont(deadline: .now + .seconds(10))
                } catch {
                    throw ResumeFailure("cont failed after loading the snapshot: \(error)")
                }
            }
        }
        console.log("VM resumed; waiting for the guest agent...")

        // 6. Host share (QMP) while the agent syncs and the clock is set.
        let hotPlug = configuration.hostShare.map(HostShareHotPlug.init(share:))
        async let plugged: Void = {
            guard let hotPlug else { return }
            try await timings.measure(.hotPlug) {
                do {
                    try await hotPlug.plug(qmp: qmp, deadline: .now + deadlines.mount)
                } catch {
                    throw ResumeFailure("\(error)")
                }
            }
        }()
        let agent: GuestAgentClient
        do {
            agent = try await context.connectAgent()
            try await timings.measure(.agentSync) { try await agent.sync(deadline: .now + deadlines.agent) }
        } catch {
            try? await plugged
            // The agent's open port is part of the captured state (§3.2); a capture
            // checks it (§5.4 #22), so silence after a good load is the snapshot's.
            throw ResumeFailure("the guest agent did not respond within \(Seconds.format(deadlines.agent)): \(error)", snapshotAtFault: true)
        }
        defer { agent.close() }
        do {
            try await plugged
        } catch {
            throw ResumeFailure("\(error)")
        }

        // 7. Rotation first, alone with the guest's CPU: under TCG the guest is the
        // bottleneck, and a mount running beside the trigger slowed it by half again
        // (measured: trigger ‖ mount 1.2 s, trigger then mount 1.0 s). The clock is set
        // while the trigger runs (guest-set-time makes the agent run `hwclock -w`, ~60 ms
        // then), long before rotate-secrets restarts the services in the real guest.
        let rotation = GuestSecretRotation(internalPCKPath: context.paths.internalPCK, timings: timings)
        let rotationDeadline = ContinuousClock.now + deadlines.rotation
        var secrets: InternalSecrets?
        if configuration.noRotation {
            try rotation.writePlaceholder()
            EmulatorWarnings.placeholdersLive(console)
            try await setGuestClock(agent)
        } else {
            console.log("Generating fresh secrets + triggering rotation...")
            do {
                let since = timings.begin(.rotate)
                let started = try await rotation.start(agent: agent, deadline: rotationDeadline)
                try await setGuestClock(agent)
                secrets = try await rotation.finish(started, agent: agent, deadline: rotationDeadline)
                timings.end(.rotate, since: since)
            } catch let failure as ResumeFailure {
                throw failure
            } catch {
                throw ResumeFailure("secret rotation failed: \(error)")
            }
            console.log("rotate-secrets completed.")
        }

        // 8. The share is mounted while the services are probed (by now the hot-plugged
        // device has long been probed by the guest, so the mount is one quick process).
        async let mounted: Void = {
            guard let hotPlug else { return }
            try await timings.measure(.mount) {
                do {
                    try await hotPlug.mount(agent: agent, deadline: .now + deadlines.mount)
                } catch {
                    throw ResumeFailure("\(error)")
                }
            }
        }()
        do {
            _ = try await timings.measure(.healthy) {
                try await context.health.waitUntilHealthy(ServiceEndpoint.all, deadline: .now + configuration.snapshotReadyTimeout) { _, elapsed in
                    console.waiting("Waiting for services", elapsed: elapsed)
                }
            }
            console.finishProgress()
        } catch {
            console.finishProgress()
            try? await mounted
            try Task.checkCancellation()
            context.printSerialTail("Services did not become healthy after the resume; last serial console lines:")
            throw ResumeFailure("\(error)")
        }
        try await mounted
        if hotPlug != nil { console.log("Host filesystem mounted in the guest.") }
        return secrets
    }

    /// `guest-set-time` to the host's wall clock: the resumed clock is as old as the snapshot.
    private func setGuestClock(_ agent: GuestAgentClient) async throws {
        try await timings.measure(.setTime) {
            do {
                try await agent.setTime(nanosecondsSinceEpoch: ResumeFlow.wallClockNanoseconds(), deadline: .now + .seconds(10))
            } catch {
                throw ResumeFailure("guest-set-time failed: \(error)")
            }
        }
    }

    /// A launch failure: a taken port fails the whole start (a cold boot would hit it
    /// too); a broken accelerator is remembered (the next start uses tcg); a disk layer
    /// QEMU cannot open blames the snapshot.
    private func launchFailure(_ error: HostError, snapshot: Snapshot) -> ResumeFailure {
        let log = (try? FileSystem.readText(context.paths.qemuLog)) ?? ""
        switch QEMUFailure.diagnose(error.message + "\n" + log) {
        case .hostForwarding(let port, _)?:
            let message = port.map { "Port \($0) is already in use. Stop any conflicting services first." } ?? error.message
            return ResumeFailure(message, fatal: HostError(.portInUse, message))
        case .accelerator(let line)?:
            try? AcceleratorVerdictCache(path: context.paths.acceleratorVerdicts)
                .markUnusable(setup.accelerator.accelerator, qemuVersion: setup.qemuVersion,
                              kernelRelease: context.host.kernelRelease, reason: line)
            return ResumeFailure("QEMU failed under \(setup.accelerator.accelerator.rawValue): \(line)")
        case .snapshotIncompatible(let line)?, .snapshotDamaged(let line)?:
            return ResumeFailure("QEMU rejected the snapshot: \(line)", snapshotAtFault: true)
        case nil:
            // The session overlay was just made on the snapshot's layer, and preflight
            // checked the base image: a backing-file error is the layer's.
            let text = error.message + "\n" + log
            let blamesLayer = text.contains(snapshot.directory) || text.contains("Could not open backing file")
            return ResumeFailure("QEMU did not start: \(error.message)", snapshotAtFault: blamesLayer)
        }
    }

    /// QEMU's own explanation, from its `-D` log (a failed incoming load exits QEMU).
    private func qemuDiagnosis() -> (line: String, blamesSnapshot: Bool)? {
        guard let log = try? FileSystem.readText(context.paths.qemuLog), let failure = QEMUFailure.diagnose(log) else { return nil }
        switch failure {
        case .snapshotIncompatible(let line), .snapshotDamaged(let line): return (line, true)
        case .accelerator(let line), .hostForwarding(_, let line): return (line, false)
        }
    }

    static func wallClockNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }
}

/// Warnings shared by the start paths.
enum EmulatorWarnings {
    /// Quarantines snapshot `id` and says where it went (`quarantined in …`), or why it
    /// could not be (a capture holding the store, a file system refusing).
    static func quarantined(_ store: SnapshotStore, id: String, reason: String) -> String {
        do {
            return "quarantined in \(try store.quarantine(id: id, reason: reason))"
        } catch {
            return "not quarantined (\(error))"
        }
    }

    /// `EMULATOR_NO_ROTATION=1` on a resume (§4.10 step 6.8, §4.19-23).
    static func placeholdersLive(_ console: EmulatorConsole) {
        console.warn("EMULATOR_NO_ROTATION=1: the snapshot's PUBLIC placeholder secrets stay in effect.")
        console.warn("Anyone who knows them controls this instance: do not expose it beyond this machine.")
    }
}
