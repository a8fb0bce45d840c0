extension Command {
    /// Runs the command with its standard streams as configured (typically inherited, so
    /// a migration's output reaches the container log as it happens) and returns how it
    /// ended. Timeout and cancellation behave as in `run(input:timeout:…)`: SIGKILL on
    /// timeout; SIGTERM to the group on cancellation, SIGKILL after `cancellationGrace`,
    /// then `CancellationError`.
    public func status(
        timeout: Duration? = nil,
        cancellationGrace: Duration = .seconds(5),
        waiter: any ProcessWaiter = DefaultWaiter()
    ) async throws -> ExitStatus {
        let child = try waiter.spawn(self)
        switch try await ExitWatch.wait(for: child, waiter: waiter, timeout: timeout, cancellationGrace: cancellationGrace) {
        case .exited(let status):
            return status
        case .timedOut:
            throw ProcessError(.timedOut, "\(executable) did not finish within \(timeout.map { "\($0)" } ?? "its timeout")")
        case .cancelled:
            throw CancellationError()
        }
    }
}
