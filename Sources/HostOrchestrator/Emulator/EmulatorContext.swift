import Logging
import QEMUControl
import StackCore

/// What every flow of one `stack-emulator` invocation shares: the configuration, the
/// host, where output goes, and the tools (qemu-img, the QEMU launcher).
struct EmulatorContext: Sendable {
    let configuration: EmulatorConfiguration
    let host: HostPlatform
    let console: EmulatorConsole
    let observer: (any PhaseObserver)?
    let logger: Logger

    var paths: EmulatorPaths { configuration.paths }
    var deadlines: EmulatorDeadlines { configuration.deadlines }
    var image: QEMUImage { QEMUImage(searchPath: configuration.executableSearchPath) }
    var launcher: QEMULauncher { QEMULauncher(searchPath: configuration.executableSearchPath) }
    var store: SnapshotStore { SnapshotStore(root: paths.snapshotStore) }
    var overlay: OverlayDisk { OverlayDisk(paths: paths, image: image) }
    var health: HealthProbe { HealthProbe(ports: configuration.ports) }

    /// Short first waits: after a resume the agent answers within ~100 ms, and guest
    /// processes finish in tens to hundreds of milliseconds; every status poll is a
    /// round trip through the (emulated) guest, so the interval stays above 5 ms.
    var agentConfiguration: GuestAgentClient.Configuration {
        GuestAgentClient.Configuration(defaultTimeout: .seconds(30), syncAttemptInitial: .milliseconds(10),
                                       syncAttemptMaximum: .milliseconds(500), execPollInitial: .milliseconds(5),
                                       execPollMaximum: .milliseconds(20), logger: logger)
    }

    var qmpConfiguration: QMPClient.Configuration {
        QMPClient.Configuration(defaultTimeout: .seconds(30), logger: logger)
    }

    func connectQMP(timeout: Duration = .seconds(10)) async throws -> QMPClient {
        try await QMPClient.connect(path: paths.monitorSocket, configuration: qmpConfiguration, deadline: .now + timeout)
    }

    func connectAgent(timeout: Duration = .seconds(10)) async throws -> GuestAgentClient {
        try await GuestAgentClient.connect(path: paths.agentSocket, configuration: agentConfiguration, deadline: .now + timeout)
    }

    /// Stops a VM this invocation launched and is giving up on (failed resume, boot
    /// timeout): SIGTERM, SIGKILL after 2 s. The serial and QEMU logs stay.
    func discard(_ process: QEMUProcess) async {
        _ = try? await process.terminate(grace: .seconds(2))
        try? paths.removeRuntimeFiles()
    }

    /// Prints the end of the serial console after a warning (§4.10: 40 lines).
    func printSerialTail(_ warning: String) {
        console.warn(warning)
        let lines = paths.serialLogTail(lines: 40)
        if lines.isEmpty {
            console.warn("(the serial log \(paths.serialLog) is empty)")
        }
        for line in lines { console.plain("    \(line)") }
    }

    /// `Dashboard`/`Backend` URL lines after a successful start (§4.10 step 8).
    func printURLs() {
        console.info("Dashboard: http://localhost:\(configuration.ports.dashboard)")
        console.info("Backend:   http://localhost:\(configuration.ports.backend)")
    }
}
