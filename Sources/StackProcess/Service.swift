/// An in-process service that lives as long as a `Supervisor` (e.g. the TCP forwarder
/// the entrypoint runs). `run()` works until the task is cancelled, which is the stop
/// request: it must then return (or throw `CancellationError`) promptly.
public protocol Service: Sendable {
    func run() async throws
}

/// A `Service` with a name for logs and what its early end means.
public struct SupervisedService: Sendable {
    public var name: String
    public var service: any Service
    /// When the service ends by itself with an error: `true` stops the supervisor
    /// (children get SIGTERM, exit code 1); `false` logs the error and keeps the
    /// children running (a broken side service should not take the servers down).
    public var failureStopsSupervisor: Bool

    public init(_ name: String, _ service: any Service, failureStopsSupervisor: Bool = false) {
        self.name = name
        self.service = service
        self.failureStopsSupervisor = failureStopsSupervisor
    }
}
