import StackCore
import StackProcess
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real `qemu-system-x86_64 -machine none` (no guest, starts in milliseconds) with a
/// QMP socket in a fresh short temp directory. `stop()` kills it and removes the
/// directory; use `QEMUProcess.with { }` or `defer { qemu.stop() }`.
public final class QEMUProcess: Sendable {
    public let directory: TemporaryDirectory
    public let monitorPath: String
    public let logPath: String
    public let child: ChildProcess
    private let tether: TestLifeline.Tether
    public let arguments: [String]
    /// Set once the child is reaped, so `stop()` never signals a recycled pid.
    private let reaped = Atomic<Bool>(false)

    public static let executable = "qemu-system-x86_64"

    /// Starts QEMU with `-machine none -nodefaults -display none` and the QMP socket,
    /// plus `extraArguments` (e.g. `-S`, `-incoming defer`), and waits for the socket.
    public static func start(_ extraArguments: [String] = []) async throws -> QEMUProcess {
        let directory = try TemporaryDirectory(prefix: "qc")
        let monitorPath = directory.file("qmp.sock")
        let logPath = directory.file("qemu.log")
        let arguments = ["-machine", "none", "-nodefaults", "-display", "none",
                         "-qmp", "unix:\(monitorPath),server=on,wait=off"] + extraArguments
        let child: ChildProcess
        let tether: TestLifeline.Tether
        do {
            (child, tether) = try ManagedTestProcess.spawn(executable, arguments: arguments, logPath: logPath)
        } catch {
            directory.remove()
            throw error
        }
        let process = QEMUProcess(directory: directory, monitorPath: monitorPath, logPath: logPath, child: child, tether: tether, arguments: arguments)
        do {
            try await ManagedTestProcess.waitForSocket(monitorPath, child: child, logPath: logPath)
        } catch {
            process.stop()
            throw error
        }
        return process
    }

    /// Runs `body` with a started QEMU and always stops it afterwards.
    public static func with<T>(_ extraArguments: [String] = [], _ body: (QEMUProcess) async throws -> T) async throws -> T {
        let process = try await start(extraArguments)
        defer { process.stop() }
        return try await body(process)
    }

    private init(directory: TemporaryDirectory, monitorPath: String, logPath: String, child: ChildProcess, tether: TestLifeline.Tether, arguments: [String]) {
        self.directory = directory
        self.monitorPath = monitorPath
        self.logPath = logPath
        self.child = child
        self.tether = tether
        self.arguments = arguments
    }

    public var pid: pid_t { child.pid }

    /// Sends `signal` (e.g. SIGSTOP/SIGCONT to make QEMU unresponsive for a while).
    public func send(_ signal: Int32) { child.send(signal) }

    /// Kills (if still running), reaps and removes the directory. Idempotent.
    public func stop() {
        if !reaped.exchange(true, ordering: .acquiringAndReleasing) {
            ManagedTestProcess.kill(child, tether: tether)
        }
        directory.remove()
    }

    /// Waits until QEMU exits on its own (after `quit`); after `timeout` it is killed
    /// (so the blocked `waitpid` returns) and this throws.
    public func waitForExit(timeout: Duration = .seconds(10)) async throws -> ExitStatus {
        let outcome = try await child.exitStatus(within: timeout)
        reaped.store(true, ordering: .releasing)
        tether.release()
        guard let outcome else { throw StackError(.systemCall, "QEMU \(child.pid) did not exit within \(timeout)") }
        return outcome
    }

    public var log: String { ManagedTestProcess.logTail(logPath) }
}
