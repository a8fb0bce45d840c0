import CSystem
import StackCore
import StackProcess
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Ties a helper server's process group to the life of the test process.
///
/// A test process that crashes never runs its `defer`s; the servers it started (QEMU,
/// qemu-ga, supervisord, node) would live on and keep `swift test`'s output pipe open,
/// hanging the run. Each tethered group gets a tiny watchdog (`sh`) whose stdin is the
/// read end of one process-wide pipe; only this process holds the write end
/// (close-on-exec, so no child inherits it). When this process dies — however it dies —
/// the pipe reaches EOF and every watchdog SIGKILLs its group.
public enum TestLifeline {
    private static let readEnd: Int32 = {
        var fds: [Int32] = [-1, -1]
        let rc = fds.withUnsafeMutableBufferPointer { cs_pipe($0.baseAddress!) }
        precondition(rc == 0, "pipe: \(StackError.describe(errno: -rc))")
        // The write end stays open, unused, until the process exits: that is the lifeline.
        return fds[0]
    }()

    /// A watchdog for one process group; `release()` it once the group is gone.
    public struct Tether: Sendable {
        let watchdog: ChildProcess?

        /// Stops the watchdog (the test tore its server down itself).
        public func release() {
            guard let watchdog else { return }
            watchdog.send(SIGKILL)
            var status: Int32 = 0
            while waitpid(watchdog.pid, &status, 0) < 0 && errno == EINTR {}
        }
    }

    /// Watches the process group `group` (a child spawned with `processGroup: .new` or
    /// `.newSession` leads a group whose id is its pid). With `graceSeconds`, the group
    /// first gets SIGTERM (supervisord then stops its own programs, which live in
    /// groups of their own) and SIGKILL that many seconds later.
    public static func tether(processGroup group: pid_t, graceSeconds: Int? = nil) -> Tether {
        let script = graceSeconds.map { "read _; kill -TERM -- -\"$0\" 2>/dev/null; sleep \($0); kill -KILL -- -\"$0\" 2>/dev/null" }
            ?? "read _; kill -KILL -- -\"$0\" 2>/dev/null"
        let command = Command(
            "/bin/sh", arguments: ["-c", script, String(group)],
            environment: ["PATH": Command.defaultSearchPath],
            processGroup: .new,
            standardInput: .fileDescriptor(readEnd), standardOutput: .discard, standardError: .discard)
        return Tether(watchdog: try? command.spawn())
    }
}
