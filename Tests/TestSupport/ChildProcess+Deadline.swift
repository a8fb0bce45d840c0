import StackProcess
#if canImport(Glibc)
import Glibc
#endif

extension ChildProcess {
    /// Waits for the exit, at most `timeout` (a bound proving "not forever", never a
    /// speed check). After it: SIGKILL (to the group when the child leads one), the
    /// child is reaped, and the result is nil.
    public func exitStatus(within timeout: Duration) async throws -> ExitStatus? {
        try await withThrowingTaskGroup(of: ExitStatus?.self) { group in
            group.addTask { try await waitForExit() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next()!
            if first == nil {
                sendToGroup(SIGKILL)
                _ = try await group.next()
            }
            group.cancelAll()
            return first
        }
    }
}
