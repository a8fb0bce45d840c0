import QEMUControl
import StackCore

/// Boots the VM from its disk (§4.10 step 7) and, unlike the shell, rotates the secrets
/// afterwards as a resume does: a snapshot-built image boots with the public
/// placeholder keys every time (§5.4 #30), including after a fallback.
///
/// Readiness has ONE deadline, `EMULATOR_READY_TIMEOUT`, for all four services (the
/// shell gave deps and app a full timeout each, §5.4 #13). When it passes, or any later
/// step fails, the VM this flow started is stopped (the shell left it running, holding
/// the ports so the next start failed on the port check); the serial and QEMU logs stay.
struct ColdBootFlow: Sendable {
    let context: EmulatorContext
    let setup: MachineSetup
    let timings: PhaseTimings

    struct Result: Sendable {
        /// The VM now serving.
        var process: QEMUProcess
        var secrets: InternalSecrets?
    }

    func run() async throws -> Result {
        let configuration = context.configuration
        let paths = context.paths
        let console = context.console
        let spec = setup.spec(.coldBoot, configuration: configuration, host: context.host)

        try await timings.measure(.prepare) {
            switch try await context.overlay.prepareForColdBoot() {
            case .reused: console.log("Reusing existing overlay disk (changes persist).")
            case .recreated: console.warn("Base image or snapshot has changed — recreating overlay.")
            case .created: console.log("Created overlay disk \(paths.overlayDisk).")
            }
            try RuntimeDisk(configuration: configuration).ensure(for: .start)
        }

        let process: QEMUProcess
        do {
            process = try await timings.measure(.launch) { try await context.launcher.launch(spec) }
        } catch let error as HostError {
            // An interrupted launch says nothing about the accelerator.
            try Task.checkCancellation()
            let log = (try? FileSystem.readText(paths.qemuLog)) ?? ""
            if case .accelerator(let line)? = QEMUFailure.diagnose(error.message + "\n" + log) {
                try? AcceleratorVerdictCache(path: paths.acceleratorVerdicts)
                    .markUnusable(setup.accelerator.accelerator, qemuVersion: setup.qemuVersion,
                                  kernelRelease: context.host.kernelRelease, reason: line)
                throw HostError(.launchFailed, "\(error.message); \(setup.accelerator.accelerator.rawValue) is now marked unusable on this host, the next start uses tcg")
            }
            throw error
        }
        console.info("VM: \(spec.resources.memoryMiB)MB / \(spec.resources.cpus) CPUs (cold boot, pid \(process.pid))")

        do {
            return Result(process: process, secrets: try await bootAndRotate(process))
        } catch {
            await context.discard(process)
            // After an interrupt the executable says what was stopped, in one line.
            if !Task.isCancelled { console.warn("Stopped the VM this start launched; serial log: \(paths.serialLog)") }
            throw error
        }
    }

    /// Returns the secrets now live (nil without rotation).
    private func bootAndRotate(_ process: QEMUProcess) async throws -> InternalSecrets? {
        let configuration = context.configuration
        let console = context.console
        do {
            _ = try await timings.measure(.boot) {
                try await context.health.waitUntilHealthy(ServiceEndpoint.all, deadline: .now + configuration.readyTimeout) { _, elapsed in
                    console.waiting("Waiting for services", elapsed: elapsed)
                }
            }
            console.finishProgress()
        } catch {
            console.finishProgress()
            try Task.checkCancellation()
            context.printSerialTail("Services did not come up within \(Seconds.format(configuration.readyTimeout)) (EMULATOR_READY_TIMEOUT); last serial console lines:")
            throw error
        }
        console.log("Services are up (cold boot in \(Seconds.format(timings.elapsed))).")

        if configuration.noRotation {
            console.warn("EMULATOR_NO_ROTATION=1: the image's own keys stay in effect (the PUBLIC placeholders in a snapshot-built image); do not expose this instance.")
            return nil
        }
        let agent: GuestAgentClient
        do {
            agent = try await context.connectAgent()
            try await timings.measure(.agentSync) { try await agent.sync(deadline: .now + context.deadlines.agent) }
        } catch {
            throw HostError(.guestFailed, "the guest agent did not respond within \(Seconds.format(context.deadlines.agent)) after the cold boot, so the secrets cannot be rotated (\(error)); set EMULATOR_NO_ROTATION=1 to run with the image's keys")
        }
        defer { agent.close() }
        console.log("Generating fresh secrets + triggering rotation...")
        let rotation = GuestSecretRotation(internalPCKPath: context.paths.internalPCK, timings: timings)
        let secrets = try await timings.measure(.rotate) {
            try await rotation.rotate(agent: agent, deadline: .now + context.deadlines.rotation)
        }
        console.log("rotate-secrets completed.")
        _ = try await timings.measure(.healthy) {
            try await context.health.waitUntilHealthy(ServiceEndpoint.all, deadline: .now + configuration.snapshotReadyTimeout) { _, elapsed in
                console.waiting("Waiting for rotated services", elapsed: elapsed)
            }
        }
        console.finishProgress()
        return secrets
    }
}
