import StackCore
import StackProcess
#if canImport(Glibc)
import Glibc
#endif

/// A minimal HTTP/1.1 GET against 127.0.0.1 for tests (Connection: close, body read to EOF).
public enum HTTPGet {
    public struct Response: Sendable {
        public let status: Int
        public let body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    /// One attempt; throws when nothing answers within `timeout`.
    public static func get(port: UInt16, path: String, timeout: Duration = .seconds(5)) async throws -> Response {
        try await BlockingCall.run { try getBlocking(port: port, path: path, timeout: timeout) }
    }

    /// Retries (10 ms doubling to 200 ms) until a response arrives or `deadline` passes.
    public static func waitFor(port: UInt16, path: String, deadline: Duration = .seconds(30)) async throws -> Response {
        let end = ContinuousClock.now + deadline
        var delay = Duration.milliseconds(10)
        while true {
            do {
                return try await get(port: port, path: path, timeout: .seconds(2))
            } catch {
                if ContinuousClock.now + delay > end { throw StackError(.systemCall, "no HTTP answer on 127.0.0.1:\(port)\(path) within \(deadline): \(error)") }
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .milliseconds(200))
            }
        }
    }

    /// A port nothing listens on right now (bind to 0, read it, close).
    public static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw StackError.systemCall("socket", errno: errno) }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0 else { throw StackError.systemCall("bind", errno: errno) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return UInt16(bigEndian: address.sin_port)
    }

    static func getBlocking(port: UInt16, path: String, timeout: Duration) throws -> Response {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw StackError.systemCall("socket", errno: errno) }
        defer { close(fd) }
        let (seconds, attoseconds) = timeout.components
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0 else { throw StackError.systemCall("connect 127.0.0.1:\(port)", errno: errno) }
        try POSIX.writeAll(fd, Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8), context: "http request")
        let raw = try POSIX.readAll(fd, limit: 64 * 1024 * 1024, context: "http response")
        guard let headerEnd = raw.firstRange(of: Array("\r\n\r\n".utf8)) else {
            throw StackError(.systemCall, "incomplete HTTP response from 127.0.0.1:\(port)")
        }
        let statusLine = String(decoding: raw[..<(raw.firstIndex(of: UInt8(ascii: "\r")) ?? headerEnd.lowerBound)], as: UTF8.self)
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw StackError(.systemCall, "bad status line: \(statusLine)") }
        let head = String(decoding: raw[..<headerEnd.lowerBound], as: UTF8.self).lowercased()
        var body = Array(raw[headerEnd.upperBound...])
        if head.contains("transfer-encoding: chunked") { body = dechunk(body) }
        return Response(status: status, body: body)
    }

    static func dechunk(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var index = 0
        while index < bytes.count {
            guard let lineEnd = bytes[index...].firstRange(of: Array("\r\n".utf8)) else { break }
            let size = Int(String(decoding: bytes[index..<lineEnd.lowerBound], as: UTF8.self), radix: 16) ?? 0
            if size == 0 { break }
            let start = lineEnd.upperBound
            out += bytes[start..<min(start + size, bytes.count)]
            index = start + size + 2
        }
        return out
    }
}
