import StackCore
import StackProcess
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Shared plumbing of `QEMUProcess` and `GuestAgentProcess`: spawn with output into a
/// log file, wait until a socket appears (or the process dies), kill and reap.
enum ManagedTestProcess {
    /// Spawns in a new process group tethered to this test process (`TestLifeline`), so
    /// a crashed test run cannot leave it behind.
    static func spawn(_ executable: String, arguments: [String], logPath: String) throws -> (ChildProcess, TestLifeline.Tether) {
        let log = try POSIX.open(logPath, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        defer { POSIX.close(log) }
        let command = Command(executable, arguments: arguments, environment: ["PATH": Command.defaultSearchPath],
                              processGroup: .new, standardInput: .discard,
                              standardOutput: .fileDescriptor(log), standardError: .fileDescriptor(log))
        let child = try command.spawn()
        return (child, TestLifeline.tether(processGroup: child.pid))
    }

    /// Polls (from 5 ms, doubling to 50 ms: no notification exists for "socket bound")
    /// until `path` is a socket. Throws with the log's tail when the process exits first.
    static func waitForSocket(_ path: String, child: ChildProcess, logPath: String,
                              timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        var delay = Duration.milliseconds(5)
        while true {
            var st = stat()
            if stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK { return }
            if let status = try child.exitStatusIfEnded() {
                throw StackError(.systemCall, "\(child.executable) exited (\(status)) before creating \(path): \(logTail(logPath))")
            }
            if ContinuousClock.now >= deadline {
                throw StackError(.systemCall, "\(child.executable) did not create \(path) within \(timeout): \(logTail(logPath))")
            }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .milliseconds(50))
        }
    }

    /// SIGKILL to the process group and a blocking reap: fast, and safe in `defer`.
    static func kill(_ child: ChildProcess, tether: TestLifeline.Tether? = nil) {
        child.sendToGroup(SIGKILL)
        var status: Int32 = 0
        while waitpid(child.pid, &status, 0) < 0 && errno == EINTR {}
        tether?.release()
    }

    static func logTail(_ path: String) -> String {
        guard let bytes = try? POSIX.readFile(path) else { return "(no log)" }
        return String(decoding: bytes.suffix(2000), as: UTF8.self)
    }
}
