import Logging

/// A client for supervisord's XML-RPC interface on its unix control socket — what
/// `supervisorctl` does, without a Python process, and with deadlines on every call.
///
/// Each call opens its own connection, so the client is a value that can be shared and
/// used concurrently. Faults carry supervisord's code and string (`SupervisordError`).
public struct SupervisordClient: Sendable {
    /// Where the container's supervisord listens (§5.2).
    public static let defaultSocketPath = "/var/run/supervisor.sock"

    public let socketPath: String
    /// Upper bound for one call when the caller gives no earlier deadline. Stopping with
    /// `wait: true` lasts up to the program's `stopwaitsecs`, so keep this above it.
    public let callTimeout: Duration
    private let logger: Logger

    public init(socketPath: String = SupervisordClient.defaultSocketPath, callTimeout: Duration = .seconds(30),
                logger: Logger = Logger(label: "supervisord")) {
        self.socketPath = socketPath
        self.callTimeout = callTimeout
        self.logger = logger
    }

    // MARK: raw calls

    /// Calls `method` and returns its value. A fault becomes `SupervisordError` with
    /// `code == .fault` and supervisord's `faultCode`/`faultString`.
    public func call(_ method: String, _ parameters: [XMLRPCValue] = [], deadline: ContinuousClock.Instant? = nil) async throws -> XMLRPCValue {
        let callDeadline = min(deadline ?? .now + callTimeout, .now + callTimeout)
        let signature = "\(method)(\(parameters.map(\.description).joined(separator: ", ")))"
        let body = try XMLRPCMethodCall(method, parameters).encoded()
        logger.debug("calling \(signature)", metadata: ["socket": "\(socketPath)"])

        let response: UnixHTTPClient.Response
        do {
            response = try await UnixHTTPClient(socketPath: socketPath)
                .post("/RPC2", contentType: "text/xml", body: body, deadline: callDeadline)
        } catch let error as SupervisordError where error.code == .timedOut || error.code == .connectionFailed {
            throw SupervisordError(error.code, "\(signature): \(error.message)", errno: error.errno)
        }
        guard response.status == 200 else {
            let hint = response.status == 401
                ? "; the [unix_http_server] section requires a username/password, which this client does not send"
                : ""
            throw SupervisordError(.invalidResponse, "\(signature): supervisord at \(socketPath) answered HTTP \(response.status) \(response.reason)\(hint)")
        }
        switch try XMLRPCResponseParser.parse(response.body) {
        case .value(let value):
            return value
        case .fault(let code, let string):
            throw SupervisordError(.fault, "supervisord refused \(signature): \(string) (fault \(code))",
                                   faultCode: SupervisordError.FaultCode(code), faultString: string)
        }
    }

    // MARK: state

    /// supervisord's own state (RUNNING once it serves requests normally).
    public func state(deadline: ContinuousClock.Instant? = nil) async throws -> SupervisorState {
        let value = try await call("supervisor.getState", deadline: deadline)
        guard case .int(let code)? = value[member: "statecode"], case .string(let name)? = value[member: "statename"] else {
            throw SupervisordError(.invalidResponse, "supervisor.getState returned \(value), expected {statecode, statename}")
        }
        return SupervisorState(code: code, name: name)
    }

    /// One process (`name` or `group:name`). An unknown name is a fault with `.badName`.
    public func processInfo(_ name: String, deadline: ContinuousClock.Instant? = nil) async throws -> SupervisedProcess {
        try SupervisedProcess(try await call("supervisor.getProcessInfo", [.string(name)], deadline: deadline))
    }

    public func allProcessInfo(deadline: ContinuousClock.Instant? = nil) async throws -> [SupervisedProcess] {
        let value = try await call("supervisor.getAllProcessInfo", deadline: deadline)
        guard case .array(let entries) = value else {
            throw SupervisordError(.invalidResponse, "supervisor.getAllProcessInfo returned \(value.typeName), expected array")
        }
        return try entries.map(SupervisedProcess.init)
    }

    // MARK: control

    /// Stops a process; with `wait`, returns once it has exited (supervisord signals its
    /// group when `stopasgroup` is set, and escalates to SIGKILL after `stopwaitsecs`).
    /// Not running is a fault with `.notRunning`.
    public func stopProcess(_ name: String, wait: Bool = true, deadline: ContinuousClock.Instant? = nil) async throws {
        _ = try await call("supervisor.stopProcess", [.string(name), .bool(wait)], deadline: deadline)
    }

    /// Starts a process; with `wait`, returns once it is RUNNING (i.e. it survived
    /// `startsecs`). Dying during start is a fault (`.abnormalTermination`, `.spawnError`).
    public func startProcess(_ name: String, wait: Bool = true, deadline: ContinuousClock.Instant? = nil) async throws {
        _ = try await call("supervisor.startProcess", [.string(name), .bool(wait)], deadline: deadline)
    }

    /// Like `supervisorctl restart a b`: stops every program, then starts every program,
    /// then waits until all are RUNNING, all within `timeout`. Returns their new state.
    ///
    /// Unlike supervisorctl, every name is checked first, so an unknown name fails
    /// (fault `.badName`) before anything was stopped; and the stops (which may each take
    /// up to `stopwaitsecs`) run concurrently. A program that was not running is simply
    /// started.
    public func restart(_ names: [String], timeout: Duration) async throws -> [SupervisedProcess] {
        let deadline = ContinuousClock.now + timeout
        var unique: [String] = []
        for name in names where !unique.contains(name) { unique.append(name) }
        if unique.isEmpty { return [] }

        var before: [String: SupervisedProcess] = [:]
        for name in unique { before[name] = try await processInfo(name, deadline: deadline) }
        logger.info("restarting \(unique.joined(separator: " "))")

        try await forEachConcurrently(unique) { name in
            do {
                try await stopProcess(name, wait: true, deadline: deadline)
            } catch let error as SupervisordError where error.faultCode == .notRunning {
                logger.debug("\(name) was not running")
            }
        }
        try await forEachConcurrently(unique) { name in
            do {
                try await startProcess(name, wait: true, deadline: deadline)
            } catch let error as SupervisordError where error.faultCode == .alreadyStarted {
                // Started by someone else after our stop: a new process all the same.
                logger.debug("\(name) was already started again")
            }
        }
        let after = try await waitUntilRunning(unique, deadline: deadline)
        for process in after {
            let old = before[process.name].flatMap(\.pid).map(String.init) ?? "none"
            logger.info("\(process.qualifiedName) restarted", metadata: ["oldPID": "\(old)", "pid": "\(process.pid.map(String.init) ?? "none")"])
        }
        return after
    }

    /// Waits until every named process is RUNNING and returns their state (in the
    /// order given). Polls from 10 ms with backoff. Fails early when one is FATAL
    /// (supervisord gave up on it); otherwise a `.timedOut` error at `deadline` lists
    /// each process that is not running, its state and supervisord's reason.
    public func waitUntilRunning(_ names: [String], deadline: ContinuousClock.Instant) async throws -> [SupervisedProcess] {
        var delay = Duration.milliseconds(10)
        var lastSeen: [SupervisedProcess] = []
        func timedOut(_ detail: String? = nil) -> SupervisordError {
            let waiting = lastSeen.filter { $0.state != .running }
            let states = waiting.isEmpty
                ? names.joined(separator: ", ") + " (state unknown: \(detail ?? "no answer"))"
                : waiting.map { "\($0.qualifiedName) is \($0.state) (\(Self.reason($0)))" }.joined(separator: "; ")
            return SupervisordError(.timedOut, "not RUNNING before the deadline: \(states)")
        }
        while true {
            var current: [SupervisedProcess] = []
            do {
                for name in names { current.append(try await processInfo(name, deadline: deadline)) }
            } catch let error as SupervisordError where error.code == .timedOut && ContinuousClock.now >= deadline {
                throw timedOut(error.message)
            }
            lastSeen = current
            let waiting = current.filter { $0.state != .running }
            if waiting.isEmpty { return current }
            if let fatal = waiting.first(where: { $0.state == .fatal }) {
                throw SupervisordError(.programFailed, "\(fatal.qualifiedName) is FATAL: supervisord gave up starting it (\(Self.reason(fatal))); see \(fatal.standardErrorLogfile.isEmpty ? "its log" : fatal.standardErrorLogfile)")
            }
            guard ContinuousClock.now + delay < deadline else { throw timedOut() }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .milliseconds(250))
        }
    }

    public func waitUntilRunning(_ names: [String], timeout: Duration) async throws -> [SupervisedProcess] {
        try await waitUntilRunning(names, deadline: .now + timeout)
    }

    private static func reason(_ process: SupervisedProcess) -> String {
        if !process.spawnError.isEmpty { return process.spawnError }
        if process.state == .exited || process.state == .backoff { return "last exit status \(process.exitStatus)" }
        return process.statusDescription.isEmpty ? "no details" : process.statusDescription
    }

    private func forEachConcurrently(_ names: [String], _ body: @escaping @Sendable (String) async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for name in names { group.addTask { try await body(name) } }
            try await group.waitForAll()
        }
    }
}
