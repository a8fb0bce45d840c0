import CLibPQ
import Logging
import Synchronization

/// Receives the server's NOTICE/WARNING/INFO messages for one connection (libpq's notice
/// receiver, the structured form of the notice processor: it gets the severity and
/// SQLSTATE as fields instead of one pre-formatted line) and logs them.
///
/// libpq calls it on whichever thread runs the statement, hence `Sendable`; the redactor
/// holds the password and the running statement's `Secret` parameters.
final class NoticeSink: Sendable {
    let logger: Logger
    let redactor: Mutex<Redactor>

    init(logger: Logger, redactor: Redactor) {
        self.logger = logger
        self.redactor = Mutex(redactor)
    }

    func receive(_ result: OpaquePointer) {
        let severity = field(result, "V") ?? field(result, "S") ?? "NOTICE"
        let scrub = redactor.withLock { $0 }
        let message = PostgresError.oneLine(scrub.apply(field(result, "M") ?? ""))
        var metadata: Logger.Metadata = ["severity": .string(severity)]
        if let state = field(result, "C") { metadata["sqlstate"] = .string(state) }
        if let detail = field(result, "D") { metadata["detail"] = .string(PostgresError.oneLine(scrub.apply(detail))) }
        logger.log(level: NoticeSink.level(forSeverity: severity), "PostgreSQL \(severity): \(message)", metadata: metadata)
    }

    static func level(forSeverity severity: String) -> Logger.Level {
        switch severity {
        case "WARNING": return .warning
        case "NOTICE": return .notice
        case "INFO": return .info
        case "LOG": return .debug
        default: return severity.hasPrefix("DEBUG") ? .debug : .notice
        }
    }

    private func field(_ result: OpaquePointer, _ code: Unicode.Scalar) -> String? {
        PQresultErrorField(result, Int32(code.value)).map { String(cString: $0) }
    }
}

/// The C entry point libpq calls; `context` is the connection's `NoticeSink`, kept alive
/// by the `ConnectionHandle` for as long as the `PGconn` exists.
let noticeReceiver: PQnoticeReceiver = { context, result in
    guard let context, let result else { return }
    Unmanaged<NoticeSink>.fromOpaque(context).takeUnretainedValue().receive(result)
}
