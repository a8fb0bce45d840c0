import StackCore
import StackProcess
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real `qemu-ga` listening on a unix socket on the host, so the guest agent client is
/// tested against the genuine agent without a VM. It runs commands on the host as the
/// test user (root in CI): everything that could change the host — clock, power, file
/// systems, users, CPUs, memory — is disabled with `-b`, so such calls get the agent's
/// own "has been disabled" error.
public final class GuestAgentProcess: Sendable {
    public static let executable = "qemu-ga"

    /// Commands that would act on the host machine itself.
    public static let blockedCommands = [
        "guest-set-time", "guest-shutdown", "guest-suspend-disk", "guest-suspend-ram", "guest-suspend-hybrid",
        "guest-fsfreeze-freeze", "guest-fsfreeze-freeze-list", "guest-fsfreeze-thaw", "guest-fstrim",
        "guest-set-user-password", "guest-set-vcpus", "guest-set-memory-blocks",
        "guest-ssh-add-authorized-keys", "guest-ssh-remove-authorized-keys",
    ]

    public let directory: TemporaryDirectory
    public let socketPath: String
    public let logPath: String
    public let child: ChildProcess
    private let tether: TestLifeline.Tether

    public static func start() async throws -> GuestAgentProcess {
        let directory = try TemporaryDirectory(prefix: "qga")
        let socketPath = directory.file("qga.sock")
        let logPath = directory.file("qga.log")
        let stateDirectory = directory.file("state")
        let child: ChildProcess
        let tether: TestLifeline.Tether
        do {
            try POSIX.makeDirectories(stateDirectory, mode: 0o700)
            // -t/-f keep the agent's state and pid files out of /var/run, so several
            // agents can run side by side.
            (child, tether) = try ManagedTestProcess.spawn(executable, arguments: [
                "-m", "unix-listen", "-p", socketPath, "-t", stateDirectory, "-f", directory.file("qga.pid"),
                "-b", blockedCommands.joined(separator: ","),
            ], logPath: logPath)
        } catch {
            directory.remove()
            throw error
        }
        let process = GuestAgentProcess(directory: directory, socketPath: socketPath, logPath: logPath, child: child, tether: tether)
        do {
            try await ManagedTestProcess.waitForSocket(socketPath, child: child, logPath: logPath)
        } catch {
            process.stop()
            throw error
        }
        return process
    }

    public static func with<T>(_ body: (GuestAgentProcess) async throws -> T) async throws -> T {
        let process = try await start()
        defer { process.stop() }
        return try await body(process)
    }

    private init(directory: TemporaryDirectory, socketPath: String, logPath: String, child: ChildProcess, tether: TestLifeline.Tether) {
        self.directory = directory
        self.socketPath = socketPath
        self.logPath = logPath
        self.child = child
        self.tether = tether
    }

    public var pid: pid_t { child.pid }

    /// SIGSTOP/SIGCONT make the agent unresponsive like a paused guest.
    public func send(_ signal: Int32) { child.send(signal) }

    public func stop() {
        ManagedTestProcess.kill(child, tether: tether)
        directory.remove()
    }

    public var log: String { ManagedTestProcess.logTail(logPath) }
}
