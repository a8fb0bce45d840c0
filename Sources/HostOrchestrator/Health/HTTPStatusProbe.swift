import StackProcess
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How one HTTP probe ended.
public enum HTTPProbeOutcome: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// A status line arrived (the body is not read).
    case status(Int)
    /// Nothing listens on the port.
    case refused
    /// No status line within the timeout: QEMU's forward accepted but the guest network
    /// is not up yet, or the service is busy.
    case timedOut
    /// The connection closed early, a malformed reply, or a socket error.
    case failed(String)

    public var description: String {
        switch self {
        case .status(let code): "HTTP \(code)"
        case .refused: "connection refused"
        case .timedOut: "timed out"
        case .failed(let why): why
        }
    }
}

/// A minimal HTTP/1.1 GET to 127.0.0.1 over a non-blocking TCP socket: connect, send,
/// read until the status line, close. No Foundation networking and no curl; the whole
/// exchange has one deadline, so a forward whose guest side hangs costs `timeout`.
public enum HTTPStatusProbe {
    public static func get(port: UInt16, path: String, timeout: Duration) async -> HTTPProbeOutcome {
        let deadline = ContinuousClock.now + timeout
        return await BlockingCall.run { exchange(port: port, path: path, deadline: deadline) }
    }

    static func exchange(port: UInt16, path: String, deadline: ContinuousClock.Instant) -> HTTPProbeOutcome {
        let fd = LoopbackSocket.make(nonBlocking: true)
        guard fd >= 0 else { return .failed("socket: \(describe(-fd))") }
        defer { close(fd) }

        var address = LoopbackSocket.address(port: port)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 {
            if errno == ECONNREFUSED { return .refused }
            guard errno == EINPROGRESS || errno == EINTR else { return .failed("connect: \(describe(errno))") }
            guard wait(fd, for: Int16(POLLOUT), until: deadline) else { return .timedOut }
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
            if error == ECONNREFUSED { return .refused }
            if error != 0 { return .failed("connect: \(describe(error))") }
        }

        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUser-Agent: stack-emulator\r\nAccept: */*\r\nConnection: close\r\n\r\n".utf8)
        var sent = 0
        while sent < request.count {
            let n = request.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, sendFlags) }
            if n > 0 { sent += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                guard wait(fd, for: Int16(POLLOUT), until: deadline) else { return .timedOut }
                continue
            }
            return .failed("send: \(describe(errno))")
        }

        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        while true {
            if let lineEnd = received.firstIndex(of: UInt8(ascii: "\n")) {
                return parseStatusLine(received[..<lineEnd])
            }
            if received.count > 8192 { return .failed("no status line in the first 8 KiB") }
            guard wait(fd, for: Int16(POLLIN), until: deadline) else { return .timedOut }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                received.append(contentsOf: buffer[0..<n])
            } else if n == 0 {
                return received.isEmpty ? .failed("connection closed without a reply") : parseStatusLine(received[...])
            } else if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                return errno == ECONNRESET ? .failed("connection reset") : .failed("recv: \(describe(errno))")
            }
        }
    }

    /// `HTTP/1.1 200 OK` → 200.
    static func parseStatusLine(_ line: ArraySlice<UInt8>) -> HTTPProbeOutcome {
        let text = String(decoding: line, as: UTF8.self)
        let parts = text.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1].count == 3, let code = Int(parts[1]) else {
            return .failed("not an HTTP reply: \(text.prefix(40))")
        }
        return .status(code)
    }

    /// poll for `events` until `deadline`; false on timeout.
    private static func wait(_ fd: Int32, for events: Int16, until deadline: ContinuousClock.Instant) -> Bool {
        while true {
            let remaining = deadline - ContinuousClock.now
            if remaining <= .zero { return false }
            let milliseconds = Int32(clamping: max(1, remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000))
            var descriptor = pollfd(fd: fd, events: events, revents: 0)
            let rc = poll(&descriptor, 1, milliseconds)
            if rc > 0 { return true }
            if rc < 0 && errno != EINTR { return true } // let the next call report the error
        }
    }

    private static func describe(_ code: Int32) -> String {
        String(cString: strerror(code))
    }

    #if canImport(Glibc)
    private static let sendFlags = Int32(MSG_NOSIGNAL)
    #else
    private static let sendFlags: Int32 = 0
    #endif
}
