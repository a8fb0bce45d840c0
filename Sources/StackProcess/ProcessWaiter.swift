/// Who collects a child's exit status: `waitpid(pid)` normally; under PID 1 / a
/// subreaper the process's `Reaper` owns `waitpid(-1)` and hands each status to its
/// owner. `DefaultWaiter` picks whichever applies, so library code that just calls
/// `Command.run()` stays correct inside `stack-entrypoint`.
public protocol ProcessWaiter: Sendable {
    /// Starts `command` so that this waiter will see its exit.
    func spawn(_ command: Command) throws -> ChildProcess
    /// Returns when `child` has exited. Cancellation does not end the wait: stop the
    /// process instead (see `Command.run`), which bounds it.
    func waitForExit(_ child: ChildProcess) async throws -> ExitStatus
}

/// The active `Reaper` when the process has one (`Reaper.current`), else `waitpid(pid)`
/// on a thread of its own.
public struct DefaultWaiter: ProcessWaiter {
    public init() {}

    public func spawn(_ command: Command) throws -> ChildProcess {
        if let reaper = Reaper.current { return try reaper.spawn(command) }
        return try command.spawn()
    }

    public func waitForExit(_ child: ChildProcess) async throws -> ExitStatus {
        try await child.waitForExit()
    }
}
