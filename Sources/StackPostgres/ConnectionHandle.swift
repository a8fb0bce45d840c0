import CLibPQ
import Logging
import StackProcess

/// Owns one `PGconn` and what lives exactly as long as it: the notice sink and the
/// cancel object. `PQfinish` runs when the last reference goes.
///
/// `@unchecked Sendable` so a blocking libpq call can run on its own thread: libpq allows
/// a `PGconn` to move between threads but never to be used by two at once, and that is
/// guaranteed by `PostgresConnection`, which is not `Sendable` (it stays in one isolation
/// domain), refuses a second statement while one runs, and awaits each blocking call
/// before issuing the next. Only `requestCancel` may run concurrently: `PQcancel` on a
/// `PGcancel` is documented thread-safe.
final class ConnectionHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    let noticeSink: NoticeSink
    private let cancelObject: OpaquePointer?

    init(pointer: OpaquePointer, logger: Logger, redactor: Redactor) {
        self.pointer = pointer
        self.noticeSink = NoticeSink(logger: logger, redactor: redactor)
        self.cancelObject = PQgetCancel(pointer)
        PQsetNoticeReceiver(pointer, noticeReceiver, Unmanaged.passUnretained(noticeSink).toOpaque())
    }

    deinit {
        PQfinish(pointer)
        if let cancelObject { PQfreeCancel(cancelObject) }
    }

    /// Asks the server to cancel the running statement (a separate connection; it may
    /// block briefly, so it runs on its own thread and the caller does not wait).
    func requestCancel() {
        guard cancelObject != nil else { return }
        BlockingCall.detach { [self] in
            var buffer = [CChar](repeating: 0, count: 256)
            _ = PQcancel(cancelObject, &buffer, Int32(buffer.count))
        }
    }

    var isBroken: Bool { PQstatus(pointer) == CONNECTION_BAD }

    /// libpq's last error text for this connection, one line, secrets scrubbed.
    func errorMessage(_ redactor: Redactor) -> String {
        let text = PQerrorMessage(pointer).map { String(cString: $0) } ?? ""
        let line = PostgresError.oneLine(redactor.apply(text))
        return line.isEmpty ? "no error message from libpq" : line
    }
}
