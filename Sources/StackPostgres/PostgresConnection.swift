import CLibPQ
import Logging
import StackProcess

/// One PostgreSQL session over libpq.
///
/// - SQL is only ever a `PostgresQuery` (a string literal) and values only ever bound
///   parameters (`PQexecParams`), so no value can change what a statement does.
/// - Every libpq call that can block runs on its own thread (`BlockingCall`), so waiting
///   for the server never occupies a thread of the cooperative pool: with 2 cores, a
///   blocked pool could otherwise starve the very task that brings the server up.
/// - Not `Sendable`: a connection lives in one isolation domain (task or actor) and runs
///   one statement at a time. The async methods take the caller's isolation, and a
///   second statement started while one is running (actor reentrancy) is refused with
///   `connectionBusy` instead of corrupting the session.
/// - Server notices (RAISE NOTICE, warnings) go to `logger`.
public final class PostgresConnection {
    public let connectionString: PostgresConnectionString
    public let logger: Logger
    private var handle: ConnectionHandle?
    private let redactor: Redactor
    private var busy = false
    /// The id of the open `withTransaction` scope, if any; `PostgresTransaction` checks it.
    var openTransaction: UInt64?
    private var transactionCounter: UInt64 = 0

    private init(connectionString: PostgresConnectionString, handle: ConnectionHandle, redactor: Redactor, logger: Logger) {
        self.connectionString = connectionString
        self.handle = handle
        self.redactor = redactor
        self.logger = logger
    }

    /// Connects, retrying while the server is not up yet (socket missing, connection
    /// refused, "the database system is starting up"), starting with
    /// `options.initialBackoff` and doubling up to `options.maximumBackoff`, until
    /// `options.deadline`. A refusal retrying cannot fix (authentication, unknown
    /// database or role) fails at once with `connectionRejected`; running out of time
    /// fails with `serverUnavailable` and the last reason, on one line, without the password.
    public static func connect(
        to connectionString: PostgresConnectionString,
        options: PostgresConnectOptions = PostgresConnectOptions(),
        logger: Logger,
        isolation: isolated (any Actor)? = #isolation
    ) async throws(PostgresError) -> PostgresConnection {
        let clock = ContinuousClock()
        let started = clock.now
        let deadline = started.advanced(by: options.deadline)
        var redactor = Redactor()
        redactor.add(connectionString.password)
        let action = "connect to PostgreSQL at \(connectionString.target)"
        var backoff = options.initialBackoff
        var attempts = 0
        var lastFailure: String?

        while true {
            if Task.isCancelled {
                throw PostgresError(.cancelled, action: action, "cancelled while waiting for the server")
            }
            attempts += 1
            let attempt = ConnectAttempt(connectionString: connectionString, applicationName: options.applicationName,
                                         deadline: deadline, redactor: redactor)
            let flag = ConnectAttempt.CancelFlag()
            let outcome = await withTaskCancellationHandler {
                await BlockingCall.run { attempt.run(cancel: flag) }
            } onCancel: {
                flag.set()
            }
            switch outcome {
            case .connected(let connected):
                let handle = ConnectionHandle(pointer: connected.pointer, logger: logger, redactor: redactor)
                let connection = PostgresConnection(connectionString: connectionString, handle: handle,
                                                    redactor: redactor, logger: logger)
                if let timeout = options.statementTimeout {
                    _ = try await connection.execute(
                        "SELECT set_config('statement_timeout', $1, false)", [.text(String(milliseconds(timeout)))],
                        action: "set statement_timeout", cancellable: true)
                }
                logger.debug("connected to PostgreSQL", metadata: [
                    "target": "\(connectionString.target)", "attempts": "\(attempts)",
                    "elapsed": "\(format(started.duration(to: clock.now)))",
                ])
                return connection
            case .failed(let message):
                if ConnectAttempt.isInvalidOption(message) {
                    throw PostgresError(.invalidConnectionString, action: action, message)
                }
                if ConnectAttempt.isPermanent(message) {
                    throw PostgresError(.connectionRejected, action: action, message)
                }
                if lastFailure == nil {
                    logger.info("waiting for PostgreSQL at \(connectionString.target): \(message)")
                } else {
                    logger.debug("PostgreSQL not ready", metadata: ["attempt": "\(attempts)", "reason": "\(message)"])
                }
                lastFailure = message
            case .deadlineReached:
                break
            case .cancelled:
                throw PostgresError(.cancelled, action: action, "cancelled while waiting for the server")
            case .systemCall(let what, let code):
                throw PostgresError(.systemCall, action: action, what, errno: code)
            }
            let remaining = clock.now.duration(to: deadline)
            if remaining <= .zero {
                let reason = lastFailure ?? "the first connection attempt did not complete"
                throw PostgresError(
                    .serverUnavailable, action: action,
                    "no connection within \(format(options.deadline)) (\(attempts) attempt\(attempts == 1 ? "" : "s")); last error: \(reason)")
            }
            do {
                try await Task.sleep(for: min(backoff, remaining))
            } catch {
                throw PostgresError(.cancelled, action: action, "cancelled while waiting for the server")
            }
            backoff = min(backoff * 2, options.maximumBackoff)
        }
    }

    /// Runs one statement with its parameters bound (`$1` is `parameters[0]`). `action`
    /// names what is being done in a failure; by default the statement's start.
    public func query(
        _ query: PostgresQuery,
        _ parameters: [PostgresParameter] = [],
        action: String? = nil,
        isolation: isolated (any Actor)? = #isolation
    ) async throws(PostgresError) -> PostgresResult {
        try await execute(query.sql, parameters, action: action ?? query.summary, cancellable: true)
    }

    /// Runs `body` inside BEGIN … COMMIT. Any error thrown by `body` rolls the
    /// transaction back and is rethrown; so does a COMMIT the server turned into a
    /// ROLLBACK (a statement failed and its error was caught inside `body`). No nesting.
    public func withTransaction<T>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: nonisolated(nonsending) (PostgresTransaction) async throws -> T
    ) async throws -> T {
        if openTransaction != nil {
            throw PostgresError(.transactionAborted, action: "begin a transaction",
                                "a transaction is already open on this connection (nesting is not supported)")
        }
        _ = try await execute("BEGIN", [], action: "begin a transaction", cancellable: true)
        transactionCounter += 1
        let id = transactionCounter
        openTransaction = id
        defer { openTransaction = nil }

        let value: T
        do {
            value = try await body(PostgresTransaction(connection: self, id: id))
        } catch {
            await rollBack(after: "\(error)")
            throw error
        }
        let status = handle.map { PQtransactionStatus($0.pointer) } ?? PQTRANS_UNKNOWN
        if status == PQTRANS_INERROR {
            await rollBack(after: "a failed statement")
            throw PostgresError(.transactionAborted, action: "commit a transaction",
                                "a statement inside the transaction failed and its error was caught; the transaction was rolled back")
        }
        if status != PQTRANS_INTRANS {
            throw PostgresError(.transactionAborted, action: "commit a transaction",
                                "the transaction was no longer open when its body returned (leave COMMIT and ROLLBACK to withTransaction, and check the connection)")
        }
        let commit = try await execute("COMMIT", [], action: "commit a transaction", cancellable: false)
        if commit.commandTag != "COMMIT" {
            throw PostgresError(.transactionAborted, action: "commit a transaction",
                                "the server answered \(commit.commandTag) instead of COMMIT; nothing was saved")
        }
        return value
    }

    /// Ends the session now (otherwise it ends when the connection is released).
    public func close() {
        handle = nil
    }

    /// The server's version as `PQserverVersion` reports it, e.g. 150018; 0 when closed.
    public var serverVersion: Int {
        handle.map { Int(PQserverVersion($0.pointer)) } ?? 0
    }

    // MARK: - Internals

    /// Rolls back after a failure inside `withTransaction`. Not cancellable: a cancelled
    /// task must still leave the session clean. Its own failure is logged, because the
    /// caller rethrows the original error.
    private func rollBack(after reason: String, isolation: isolated (any Actor)? = #isolation) async {
        guard let handle, !handle.isBroken else { return }
        let status = PQtransactionStatus(handle.pointer)
        guard status == PQTRANS_INTRANS || status == PQTRANS_INERROR else { return }
        do {
            _ = try await execute("ROLLBACK", [], action: "roll back a transaction", cancellable: false)
            logger.debug("transaction rolled back", metadata: ["reason": "\(reason)"])
        } catch {
            logger.warning("ROLLBACK failed after \(reason): \(error)")
        }
    }

    func execute(
        _ sql: String,
        _ parameters: [PostgresParameter],
        action: String,
        cancellable: Bool,
        isolation: isolated (any Actor)? = #isolation
    ) async throws(PostgresError) -> PostgresResult {
        guard let handle else {
            throw PostgresError(.connectionClosed, action: action, "the connection was closed")
        }
        if busy {
            throw PostgresError(.connectionBusy, action: action,
                                "another statement is still running on this connection (use one connection per task)")
        }
        if cancellable && Task.isCancelled {
            throw PostgresError(.cancelled, action: action, "cancelled before the statement was sent")
        }
        var statementRedactor = redactor
        for (index, parameter) in parameters.enumerated() {
            if parameter.wireValue?.utf8.contains(0) == true {
                throw PostgresError(.invalidParameter, action: action,
                                    "parameter $\(index + 1) contains a NUL byte, which a PostgreSQL text value cannot hold")
            }
            if parameter.isSecret { statementRedactor.add(parameter.wireValue) }
        }
        let execution = StatementExecution(sql: sql, parameters: parameters, action: action, redactor: statementRedactor)
        logger.trace("statement", metadata: ["sql": "\(PostgresError.oneLine(sql))", "parameters": "\(parameters.count)"])

        busy = true
        defer { busy = false }
        let result: Result<PostgresResult, PostgresError>
        if cancellable {
            result = await withTaskCancellationHandler {
                await BlockingCall.run { execution.run(on: handle) }
            } onCancel: {
                handle.requestCancel()
            }
        } else {
            result = await BlockingCall.run { execution.run(on: handle) }
        }
        switch result {
        case .success(let value):
            return value
        case .failure(let error):
            // 57014 is also the statement timeout; only a cancelled task makes it ours.
            if error.sqlState == "57014" && Task.isCancelled {
                throw PostgresError(.cancelled, action: action, error.message, sqlState: error.sqlState)
            }
            throw error
        }
    }
}

@available(*, unavailable, message: "a PostgresConnection belongs to one task or actor; open one per task")
extension PostgresConnection: Sendable {}

func milliseconds(_ duration: Duration) -> Int64 {
    let (seconds, attoseconds) = duration.components
    return seconds * 1000 + attoseconds / 1_000_000_000_000_000
}

/// `250 ms`, `2.5 s`.
func format(_ duration: Duration) -> String {
    let ms = milliseconds(duration)
    if ms < 1000 { return "\(ms) ms" }
    let tenths = (ms + 50) / 100
    return "\(tenths / 10).\(tenths % 10) s"
}
