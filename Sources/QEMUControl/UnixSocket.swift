import CSystem
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Connecting to QEMU's and the guest agent's unix sockets.
enum UnixSocket {
    /// Connects to `path`, retrying while the socket does not exist yet or nobody
    /// accepts (QEMU or qemu-ga still starting) with a backoff from 10 ms, until
    /// `deadline`. Returns a non-blocking, close-on-exec descriptor.
    static func connect(path: String, deadline: ContinuousClock.Instant) async throws -> Int32 {
        var delay = Duration.milliseconds(10)
        while true {
            let result = connectOnce(path: path)
            switch result {
            case .success(let fd):
                return fd
            case .failure(let error):
                let retryable = error.errno == ENOENT || error.errno == ECONNREFUSED || error.errno == EAGAIN
                let now = ContinuousClock.now
                guard retryable, now < deadline else {
                    if retryable {
                        throw QEMUControlError(.timedOut, "\(path): no one accepted a connection before the deadline (\(StackErrorText.of(error.errno))); is QEMU running?", errno: error.errno)
                    }
                    throw error
                }
                try await Task.sleep(until: min(now + delay, deadline), clock: .continuous)
                delay = min(delay * 2, .milliseconds(100))
            }
        }
    }

    static func connectOnce(path: String) -> Result<Int32, QEMUControlError> {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        let utf8 = Array(path.utf8)
        guard !utf8.isEmpty, utf8.count < capacity else {
            return .failure(QEMUControlError(.connectionFailed,
                "\(path): a unix socket path must be 1 to \(capacity - 1) bytes long (it is \(utf8.count)); use a shorter run directory"))
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: utf8)
            raw[utf8.count] = 0
        }
        #if canImport(Glibc)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
        let fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
        if fd < 0 { return .failure(.systemCall("socket for \(path)", errno: errno)) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + utf8.count + 1)
        var rc: Int32
        repeat {
            rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { systemConnect(fd, $0, length) }
            }
        } while rc != 0 && errno == EINTR
        if rc != 0 {
            let code = errno
            close(fd)
            return .failure(.systemCall("connect \(path)", errno: code))
        }
        let flags = fcntl(fd, F_GETFL)
        if flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 {
            let code = errno
            close(fd)
            return .failure(.systemCall("fcntl O_NONBLOCK on \(path)", errno: code))
        }
        return .success(fd)
    }
}

@inline(__always) private func systemConnect(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) -> Int32 {
    connect(fd, address, length)
}

/// strerror text for an optional errno.
enum StackErrorText {
    static func of(_ code: Int32?) -> String {
        guard let code, let text = strerror(code) else { return "unknown error" }
        return String(cString: text)
    }
}
