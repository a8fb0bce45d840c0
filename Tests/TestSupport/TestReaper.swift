import StackProcess
#if canImport(Glibc)
import Glibc
#endif

/// Reaping of helper processes without blocking the caller.
public enum TestReaper {
    /// Waits for `pid` on a dedicated thread. Tests run on a cooperative pool with one
    /// thread per core; a blocking `waitpid` there would stall every other test until the
    /// process is gone.
    public static func reapInBackground(_ pid: pid_t) {
        BlockingCall.detach {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
    }
}
