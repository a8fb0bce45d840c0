import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A started process. Whoever spawned it waits for it with `waitForExit()`: a `waitpid`
/// on this pid only, or — when the process has an active `Reaper` (PID 1 / subreaper,
/// which owns `waitpid(-1)`) — the status the Reaper collected for this pid.
public struct ChildProcess: Sendable, Hashable {
    public let pid: pid_t
    public let executable: String
    /// `true` when the child leads its own process group (its pgid is its pid).
    public let leadsGroup: Bool

    public init(pid: pid_t, executable: String, leadsGroup: Bool) {
        self.pid = pid
        self.executable = executable
        self.leadsGroup = leadsGroup
    }

    /// Sends `signal` to the process. A process that is already gone is not an error.
    public func send(_ signal: Int32) {
        _ = kill(pid, signal)
    }

    /// Sends `signal` to the child's whole process group when it leads one (reaching
    /// the grandchildren it started), else to the child alone.
    public func sendToGroup(_ signal: Int32) {
        if leadsGroup {
            _ = kill(-pid, signal)
        } else {
            _ = kill(pid, signal)
        }
    }

    /// Waits for this pid only (never `waitpid(-1)`, which would steal other owners'
    /// statuses), through the active `Reaper` if there is one.
    public func waitForExit() async throws -> ExitStatus {
        if let reaper = Reaper.current { return try await reaper.wait(for: pid) }
        let pid = self.pid
        let executable = self.executable
        return try await BlockingCall.run {
            var status: Int32 = 0
            while true {
                let rc = waitpid(pid, &status, 0)
                if rc == pid { return ExitStatus(waitStatus: status) }
                if rc < 0 && errno == EINTR { continue }
                throw ProcessError(.systemCall, "waitpid \(pid) (\(executable))", errno: errno)
            }
        }
    }

    /// Non-blocking check: the exit status if the child has ended (and is now reaped).
    public func exitStatusIfEnded() throws -> ExitStatus? {
        if let reaper = Reaper.current { return try reaper.statusIfEnded(pid) }
        var status: Int32 = 0
        let rc = waitpid(pid, &status, WNOHANG)
        if rc == 0 { return nil }
        if rc == pid { return ExitStatus(waitStatus: status) }
        throw ProcessError(.systemCall, "waitpid \(pid) (\(executable))", errno: errno)
    }
}
