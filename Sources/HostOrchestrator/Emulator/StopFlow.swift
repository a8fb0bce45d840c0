import QEMUControl
import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Stops the VM (§4.12), fixing what the shell got wrong: `system_powerdown` is sent on
/// a capabilities-negotiated QMP connection, so the guest really is asked to shut down
/// (§5.4 #10); QEMU's exit is awaited on its pidfd (no sleeps) until
/// `EMULATOR_STOP_TIMEOUT`, then SIGTERM and SIGKILL go to the verified process only
/// (a stale pid file is removed, never acted on, §5.4 #11). The serial and QEMU logs
/// stay for diagnosis (§5.4 #16); overlay, ISO and internal-pck stay too (§4.19-32).
struct StopFlow: Sendable {
    let context: EmulatorContext

    enum Outcome: Sendable, Equatable {
        case notRunning
        /// A pid file named a process that is gone or is not our QEMU.
        case removedStalePidFile(String)
        case poweredOff(pid: pid_t, after: Duration)
        case terminated(pid: pid_t, QEMUProcess.Termination)
        /// The guest was paused or loading, so QEMU was terminated without asking it.
        case terminatedNotRunning(pid: pid_t)
    }

    func run() async throws -> Outcome {
        let paths = context.paths
        switch QEMUPidFile(path: paths.pidFile).lookup() {
        case .notRunning(.noPidFile):
            try paths.removeRuntimeFiles()
            return .notRunning
        case .notRunning(let reason):
            try paths.removeRuntimeFiles()
            return .removedStalePidFile(reason.description)
        case .running(let process):
            let outcome = await stop(process)
            try paths.removeRuntimeFiles()
            return outcome
        }
    }

    func stop(_ process: QEMUProcess) async -> Outcome {
        let started = ContinuousClock.now
        let deadline = started + context.deadlines.stop
        do {
            let qmp = try await QMPClient.connect(path: context.paths.monitorSocket, configuration: context.qmpConfiguration,
                                                  deadline: min(deadline, .now + .seconds(3)))
            defer { qmp.close() }
            // A guest that is not running (paused by an interrupted resume or capture,
            // still loading a snapshot) never sees the ACPI button: waiting the whole
            // stop deadline for it would only delay the SIGTERM.
            if try await qmp.queryStatus(deadline: min(deadline, .now + .seconds(3))).running {
                try await qmp.systemPowerdown(deadline: min(deadline, .now + .seconds(3)))
                if await process.waitForExit(timeout: deadline - .now) {
                    return .poweredOff(pid: process.pid, after: ContinuousClock.now - started)
                }
                context.logger.info("the guest did not power off within \(context.deadlines.stop); terminating QEMU")
            } else {
                _ = try? await process.terminate(grace: .seconds(3))
                return .terminatedNotRunning(pid: process.pid)
            }
        } catch {
            context.logger.info("system_powerdown not delivered (\(error)); terminating QEMU")
        }
        do {
            return .terminated(pid: process.pid, try await process.terminate(grace: .seconds(3)))
        } catch {
            return .terminated(pid: process.pid, .killed)
        }
    }
}
