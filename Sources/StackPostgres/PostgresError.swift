import StackCore

/// The error every StackPostgres API throws: a stable `code`, the server's SQLSTATE when
/// it sent one, the primary message, and the `action` that was being done
/// ("connect to PostgreSQL at app@/run/postgresql:5432/stackframe", "update internal ApiKeySet").
///
/// Every text in it is one line and free of the connection password and of any `Secret`
/// bound as a parameter (those are replaced by `<redacted>` before the error is built), so
/// it can be printed or logged as is.
public struct PostgresError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The connection string is not a `postgresql://` URI or a `key=value` list.
        public static let invalidConnectionString = Code("invalid-connection-string")
        /// The server answered and refused (authentication, unknown database or role,
        /// SSL mismatch): retrying cannot help.
        public static let connectionRejected = Code("connection-rejected")
        /// The server did not accept a connection before the deadline (not running,
        /// still starting up, socket missing).
        public static let serverUnavailable = Code("server-unavailable")
        /// The connection broke while a statement was running.
        public static let connectionLost = Code("connection-lost")
        /// The connection was closed with `close()` before the statement.
        public static let connectionClosed = Code("connection-closed")
        /// A second statement was started while one was running on the same connection.
        public static let connectionBusy = Code("connection-busy")
        /// The server reported an error for a statement; `sqlState` says which.
        public static let queryFailed = Code("query-failed")
        /// A parameter cannot be sent as PostgreSQL text (it contains a NUL byte).
        public static let invalidParameter = Code("invalid-parameter")
        /// The statement's result does not have the expected shape (rows, columns, values).
        public static let unexpectedResult = Code("unexpected-result")
        /// A transaction ended in ROLLBACK instead of COMMIT, or was ended by its body.
        public static let transactionAborted = Code("transaction-aborted")
        /// A row the operation requires does not exist.
        public static let rowMissing = Code("row-missing")
        /// The task was cancelled while waiting for the server.
        public static let cancelled = Code("cancelled")
        /// A system call failed; `errno` says why.
        public static let systemCall = Code("system-call")
    }

    public let code: Code
    /// The SQLSTATE the server sent (e.g. `23505`), when it sent one.
    public let sqlState: String?
    /// The primary message, one line.
    public let message: String
    /// The server's DETAIL line, one line, secrets redacted.
    public let detail: String?
    /// What was being done, e.g. `update internal ApiKeySet`.
    public let action: String
    /// The `errno` of a failing system call, when there was one.
    public let errno: Int32?

    public init(_ code: Code, action: String, _ message: String, sqlState: String? = nil, detail: String? = nil, errno: Int32? = nil) {
        self.code = code
        self.action = PostgresError.oneLine(action)
        self.message = PostgresError.oneLine(message)
        self.sqlState = sqlState
        self.detail = detail.map(PostgresError.oneLine)
        self.errno = errno
    }

    public var description: String {
        var text = "\(action): \(message)"
        if let errno { text += ": \(StackError.describe(errno: errno))" }
        switch (sqlState, detail) {
        case let (state?, detail?): text += " (SQLSTATE \(state); \(detail))"
        case let (state?, nil): text += " (SQLSTATE \(state))"
        case let (nil, detail?): text += " (\(detail))"
        case (nil, nil): break
        }
        return text
    }

    /// libpq messages span several lines ("…failed: No such file or directory\n\tIs the
    /// server running…"); logs and errors here are one line each.
    static func oneLine(_ text: String) -> String {
        var result = ""
        var pendingSpace = false
        for character in text {
            if character.isNewline || character == "\t" || character == " " {
                pendingSpace = !result.isEmpty
            } else {
                if pendingSpace { result.append(" ") }
                pendingSpace = false
                result.append(character)
            }
        }
        return result
    }
}
