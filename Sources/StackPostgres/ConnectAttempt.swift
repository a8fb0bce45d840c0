import CLibPQ
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One non-blocking connection attempt (`PQconnectStartParams` + `PQconnectPoll` +
/// `poll`), bounded by the caller's deadline and abandoned promptly on cancellation.
/// It blocks its thread: run it through `BlockingCall`.
struct ConnectAttempt: Sendable {
    enum Outcome: Sendable {
        case connected(ConnectedPointer)
        /// The attempt failed; the message says why (one line, secrets scrubbed).
        case failed(String)
        case deadlineReached
        case cancelled
        case systemCall(String, errno: Int32)
    }

    /// A connected `PGconn` being handed from the attempt's thread to its owner.
    struct ConnectedPointer: @unchecked Sendable {
        let pointer: OpaquePointer
    }

    /// Set from a task-cancellation handler, read between polls.
    final class CancelFlag: Sendable {
        private let value = Atomic<Bool>(false)
        func set() { value.store(true, ordering: .relaxed) }
        var isSet: Bool { value.load(ordering: .relaxed) }
    }

    let connectionString: PostgresConnectionString
    let applicationName: String
    let deadline: ContinuousClock.Instant
    let redactor: Redactor

    /// Longest single `poll`, so cancellation is noticed within this time.
    private static let pollSlice: Duration = .milliseconds(50)

    func run(cancel: CancelFlag) -> Outcome {
        // Keywords after "dbname" override what the expanded connection string says;
        // results are decoded as UTF-8, so the client encoding is not negotiable.
        let keywords = ["dbname", "fallback_application_name", "client_encoding"]
        let values = [connectionString.raw, applicationName, "UTF8"]
        let started: OpaquePointer? = CStrings.with(keywords) { keywordPointers in
            CStrings.with(values) { valuePointers in
                PQconnectStartParams(keywordPointers, valuePointers, 1)
            }
        }
        guard let connection = started else {
            return .systemCall("PQconnectStartParams", errno: ENOMEM)
        }
        // libpq's contract: start as if PQconnectPoll had returned PGRES_POLLING_WRITING.
        // (It may already have failed: a unix-socket connect is tried at once, and a
        // missing socket then looks just like a bad option value, so both go by message.)
        var status = PQstatus(connection) == CONNECTION_BAD ? PGRES_POLLING_FAILED : PGRES_POLLING_WRITING
        while true {
            if status == PGRES_POLLING_OK {
                return .connected(ConnectedPointer(pointer: connection))
            }
            if status == PGRES_POLLING_FAILED {
                let message = errorMessage(connection)
                PQfinish(connection)
                return .failed(message)
            }
            let events = Int16(status == PGRES_POLLING_READING ? POLLIN : POLLOUT)
            switch waitForSocket(connection, events: events, cancel: cancel) {
            case .ready: break
            case .deadlineReached:
                PQfinish(connection)
                return .deadlineReached
            case .cancelled:
                PQfinish(connection)
                return .cancelled
            case .failed(let code):
                PQfinish(connection)
                return .systemCall("poll on the PostgreSQL socket", errno: code)
            }
            status = PQconnectPoll(connection)
        }
    }

    private enum Wait { case ready, deadlineReached, cancelled, failed(Int32) }

    private func waitForSocket(_ connection: OpaquePointer, events: Int16, cancel: CancelFlag) -> Wait {
        while true {
            if cancel.isSet { return .cancelled }
            let remaining = ContinuousClock.now.duration(to: deadline)
            if remaining <= .zero { return .deadlineReached }
            let slice = min(remaining, ConnectAttempt.pollSlice)
            let milliseconds = max(1, Int32(slice.components.seconds * 1000 + slice.components.attoseconds / 1_000_000_000_000_000))
            // The socket can change between polls (libpq tries the next address).
            var descriptor = pollfd(fd: PQsocket(connection), events: events, revents: 0)
            let rc = poll(&descriptor, 1, milliseconds)
            if rc > 0 { return .ready }
            if rc < 0 && errno != EINTR { return .failed(errno) }
        }
    }

    private func errorMessage(_ connection: OpaquePointer) -> String {
        let text = PQerrorMessage(connection).map { String(cString: $0) } ?? ""
        let line = PostgresError.oneLine(redactor.apply(text))
        return line.isEmpty ? "no error message from libpq" : line
    }

    /// Whether a failed attempt can succeed later. The server gives no SQLSTATE to a
    /// client whose connection it refuses before a session exists, so this goes by
    /// libpq's and the server's (English) texts: a refusal that retrying cannot fix fails
    /// at once; anything else (socket missing, connection refused, "the database system
    /// is starting up", "… shutting down", too many clients, name resolution while the
    /// network comes up, unknown texts) is retried until the deadline, which bounds the
    /// cost of a misjudgement.
    static func isPermanent(_ message: String) -> Bool {
        if isInvalidOption(message) { return true }
        let permanentMarkers = [
            "password authentication failed",
            "authentication failed for user",
            "no pg_hba.conf entry",
            "no password supplied",
            "does not exist",               // database "x" / role "x" does not exist
            "server does not support SSL",
            "certificate",
        ]
        return permanentMarkers.contains { message.contains($0) }
    }
}

extension ConnectAttempt {
    /// libpq refused an option's value ("invalid port number: …", "invalid sslmode
    /// value: …", "invalid integer value … for connection option …").
    static func isInvalidOption(_ message: String) -> Bool {
        message.hasPrefix("invalid ") || message.contains("for connection option")
    }
}

/// NULL-terminated `const char *const *` arrays for libpq, alive during `body`.
enum CStrings {
    static func with<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
        let copies: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) } + [nil]
        defer { for copy in copies { free(copy) } }
        return copies.withUnsafeBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buffer.count) { body($0) }
        }
    }
}
