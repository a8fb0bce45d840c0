import StackCore
import StackProcess

/// Starts a daemonized QEMU for a `MachineSpec` and returns the verified process.
///
/// Before launching it clears what a previous run left (pid file, sockets) and
/// truncates the serial log and QEMU's `-D` log, so whatever they hold afterwards
/// belongs to this launch. A failed launch throws `.launchFailed` with QEMU's own
/// first complaint (from stderr or the `-D` log); `QEMUFailure.diagnose` on the log
/// tells the caller which kind of failure it was.
public struct QEMULauncher: Sendable {
    public var searchPath: String
    /// How long QEMU may take to initialise (the daemonizing parent exits after that).
    public var timeout: Duration

    public init(searchPath: String, timeout: Duration = .seconds(30)) {
        self.searchPath = searchPath
        self.timeout = timeout
    }

    public func launch(_ spec: MachineSpec) async throws -> QEMUProcess {
        guard spec.daemonize else {
            throw HostError(.launchFailed, "QEMULauncher needs a daemonized spec (the caller of a foreground QEMU owns its process)")
        }
        let files = spec.files
        if let share = spec.hostShare, try FileSystem.status(share.root, followLinks: true)?.isDirectory != true {
            throw HostError(.invalidConfiguration, "The host directory to share with the guest, \(share.root), does not exist; set EMULATOR_HOST_SHARE to an existing directory, or off")
        }
        for stale in [files.pidFile, files.monitorSocket, files.agentSocket] {
            try FileSystem.removeFile(stale)
        }
        try FileSystem.truncate(files.serialLog)
        if let log = files.qemuLog { try FileSystem.truncate(log) }

        let commandLine = QEMUCommandLine(spec)
        let qemu = QEMUBinary(executable: commandLine.executable, searchPath: searchPath)
        var command = commandLine.command(searchPath: searchPath)
        command.executable = try qemu.resolvedPath()
        let output = try await HostError.translating { try await command.run(timeout: timeout, outputLimit: 1024 * 1024) }
        guard output.status.isSuccess else {
            let logText = files.qemuLog.flatMap { try? FileSystem.readText($0) } ?? ""
            let complaint = QEMULauncher.firstComplaint(stderr: output.standardErrorText, log: logText)
            throw HostError(.launchFailed, "QEMU failed to start (\(output.status)): \(complaint)")
        }
        switch QEMUPidFile(path: files.pidFile).lookup() {
        case .running(let process):
            return process
        case .notRunning(let reason):
            let logText = files.qemuLog.flatMap { try? FileSystem.readText($0) } ?? ""
            throw HostError(.launchFailed, "QEMU reported a successful start but is not running (\(reason)): \(QEMULauncher.firstComplaint(stderr: output.standardErrorText, log: logText))")
        }
    }

    static func firstComplaint(stderr: String, log: String) -> String {
        let text = stderr + "\n" + log
        if let failure = QEMUFailure.diagnose(text) { return failure.line }
        let lines = text.split(whereSeparator: \.isNewline).map { String($0).trimmingWhitespace }.filter { !$0.isEmpty }
        return lines.first ?? "no message (see \(log.isEmpty ? "QEMU's -D log" : "the -D log"))"
    }
}
