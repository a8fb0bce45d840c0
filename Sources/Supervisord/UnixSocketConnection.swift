import StackCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A non-blocking AF_UNIX stream socket whose every operation waits with
/// `poll` up to a deadline. Meant to be driven from one blocking thread; `cancel()` may
/// be called from any thread and wakes that thread (shutdown makes poll return).
final class UnixSocketConnection: Sendable {
    let path: String
    private let descriptor: Int32
    private let address: sockaddr_un
    private struct State {
        var closed = false
        var cancelled = false
    }
    private let state = Mutex(State())

    deinit { close() }

    /// A new, unconnected socket for `path` (validated: it must fit `sun_path`).
    init(path: String) throws {
        var address = sockaddr_un()
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        let pathBytes = Array(path.utf8)
        guard !pathBytes.isEmpty, pathBytes.count < capacity, !pathBytes.contains(0) else {
            throw SupervisordError(.invalidRequest, "supervisord socket path \"\(path)\" is empty, contains NUL or is longer than \(capacity - 1) bytes")
        }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw SupervisordError.socket(.socketUnavailable, "socket(AF_UNIX)", errno: errno) }
        self.path = path
        self.address = address
        self.descriptor = fd
    }

    /// One connection attempt. A unix-socket connect completes at once or fails; `false`
    /// (EAGAIN) means the listen backlog is full and the caller should retry later.
    /// Errors name the path and say what is likely wrong.
    func tryConnect() throws -> Bool {
        var address = self.address
        while true {
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            if rc == 0 { return true }
            let failure = errno
            switch failure {
            case EINTR:
                continue
            case EAGAIN:
                return false
            case ENOENT:
                throw SupervisordError.socket(.socketUnavailable, "connect \(path)", errno: failure,
                                              hint: "the supervisord control socket does not exist; supervisord may not be running")
            case ECONNREFUSED:
                throw SupervisordError.socket(.socketUnavailable, "connect \(path)", errno: failure,
                                              hint: "nothing listens on this socket; supervisord may not be running (stale socket file)")
            case EACCES, EPERM:
                throw SupervisordError.socket(.socketUnavailable, "connect \(path)", errno: failure,
                                              hint: "the socket is private to its owner (mode 0700); run as root")
            default:
                throw SupervisordError.socket(.socketUnavailable, "connect \(path)", errno: failure,
                                              hint: "supervisord may not be running")
            }
        }
    }

    /// Sends every byte (no SIGPIPE: a closed peer is an error, not a signal).
    func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        var offset = 0
        while offset < bytes.count {
            try wait(for: Int16(POLLOUT), deadline: deadline, doing: "send request to")
            let n = bytes.withUnsafeBytes { buffer in
                Glibc.send(descriptor, buffer.baseAddress! + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n >= 0 {
                offset += n
                continue
            }
            let failure = errno
            if failure == EINTR || failure == EAGAIN { continue }
            try throwIfCancelled()
            throw SupervisordError.socket(.connectionFailed, "send request to \(path)", errno: failure)
        }
    }

    /// Reads what is available (waiting for at least one byte); 0 means the peer closed.
    func receive(into buffer: inout [UInt8], deadline: ContinuousClock.Instant) throws -> Int {
        while true {
            try wait(for: Int16(POLLIN), deadline: deadline, doing: "read reply from")
            let n = buffer.withUnsafeMutableBytes { Glibc.recv(descriptor, $0.baseAddress, $0.count, 0) }
            if n > 0 { return n }
            try throwIfCancelled()
            if n == 0 { return 0 }
            let failure = errno
            if failure == EINTR || failure == EAGAIN { continue }
            throw SupervisordError.socket(.connectionFailed, "read reply from \(path)", errno: failure)
        }
    }

    /// Wakes the thread using the connection: the call in progress ends with CancellationError.
    func cancel() {
        state.withLock { state in
            state.cancelled = true
            if !state.closed { _ = shutdown(descriptor, Int32(SHUT_RDWR)) }
        }
    }

    func close() {
        state.withLock { state in
            if !state.closed {
                state.closed = true
                _ = Glibc.close(descriptor)
            }
        }
    }

    private func throwIfCancelled() throws {
        if state.withLock({ $0.cancelled }) { throw CancellationError() }
    }

    private func wait(for events: Int16, deadline: ContinuousClock.Instant, doing what: String) throws {
        while true {
            try throwIfCancelled()
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else {
                throw SupervisordError(.timedOut, "\(what) \(path): no answer from supervisord within the deadline")
            }
            var descriptor = pollfd(fd: self.descriptor, events: events, revents: 0)
            let ready = poll(&descriptor, 1, Self.milliseconds(remaining))
            if ready > 0 { return }  // readable, writable, or an error the next call reports
            if ready < 0 && errno != EINTR {
                throw SupervisordError.socket(.connectionFailed, "poll \(path)", errno: errno)
            }
        }
    }

    /// A poll timeout: rounded up so a wait never ends just before its deadline.
    private static func milliseconds(_ duration: Duration) -> Int32 {
        let (seconds, attoseconds) = duration.components
        let total = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: max(total, 0))
    }
}
