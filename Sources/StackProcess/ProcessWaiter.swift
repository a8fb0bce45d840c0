/// Who collects a child's exit status. `DirectWaiter` calls `waitpid(pid)`; a `Reaper`
/// (PID 1 / subreaper) owns `waitpid(-1)` and hands each status to its owner. Code that
/// may run under a Reaper takes a waiter instead of assuming `waitpid(pid)` works.
public protocol ProcessWaiter: Sendable {
    /// Starts `command` so that this waiter will see its exit.
    func spawn(_ command: Command) throws -> ChildProcess
    /// Returns when `child` has exited. Cancellation does not end the wait: stop the
    /// process instead (see `Command.run`), which bounds it.
    func waitForExit(_ child: ChildProcess) async throws -> ExitStatus
}

/// `waitpid(pid)` on a thread of its own: right whenever nothing in the process calls
/// `waitpid(-1)`.
public struct DirectWaiter: ProcessWaiter {
    public init() {}

    public func spawn(_ command: Command) throws -> ChildProcess {
        try command.spawn()
    }

    public func waitForExit(_ child: ChildProcess) async throws -> ExitStatus {
        try await child.waitForExit()
    }
}
