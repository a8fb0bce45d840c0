import CSystem
import StackCore
import StackProcess
import Supervisord
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The HTTP-over-unix-socket transport against a listening socket that answers with
/// canned bytes (or not at all): the cases a healthy supervisord never produces.
@Suite struct UnixHTTPTransportTests {
    static let okReply = "<?xml version='1.0'?>\n<methodResponse><params><param><value><boolean>1</boolean></value></param></params></methodResponse>\n"

    @Test func sendsOnePOSTWithLengthAndConnectionClose() async throws {
        try await withListeningSocket { server in
            let reply = "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: \(Self.okReply.utf8.count)\r\n\r\n\(Self.okReply)"
            let request = server.answering(with: Array(reply.utf8))
            let client = SupervisordClient(socketPath: server.path, callTimeout: .seconds(5))
            let value = try await client.call("supervisor.stopProcess", [.string("stack-app"), .bool(true)])
            #expect(value == .bool(true))
            let text = String(decoding: try await request.value(), as: UTF8.self)
            #expect(text.hasPrefix("POST /RPC2 HTTP/1.1\r\n"))
            #expect(text.contains("\r\nConnection: close\r\n"))
            #expect(text.contains("\r\nContent-Type: text/xml\r\n"))
            let body = try #require(text.firstRange(of: "\r\n\r\n")).upperBound
            #expect(text.contains("\r\nContent-Length: \(text[body...].utf8.count)\r\n"))
            #expect(text[body...].contains("<methodName>supervisor.stopProcess</methodName>"))
        }
    }

    @Test func readsABodyDelimitedByConnectionClose() async throws {
        try await withListeningSocket { server in
            let reply = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/xml\r\n\r\n\(Self.okReply)"
            let request = server.answering(with: Array(reply.utf8))
            let value = try await SupervisordClient(socketPath: server.path, callTimeout: .seconds(5)).call("supervisor.getState")
            #expect(value == .bool(true))
            _ = try await request.value()
        }
    }

    @Test func aTruncatedBodyIsAConnectionFailure() async throws {
        try await withListeningSocket { server in
            let reply = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n<?xml version='1.0'?>"
            let request = server.answering(with: Array(reply.utf8))
            let error = await #expect(throws: SupervisordError.self) {
                try await SupervisordClient(socketPath: server.path, callTimeout: .seconds(5)).call("supervisor.getState")
            }
            #expect(error?.code == .connectionFailed)
            #expect(error?.message.contains("supervisor.getState()") == true)
            _ = try await request.value()
        }
    }

    @Test func anHTTPErrorStatusIsReportedWithAHint() async throws {
        try await withListeningSocket { server in
            let reply = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"
            let request = server.answering(with: Array(reply.utf8))
            let error = await #expect(throws: SupervisordError.self) {
                try await SupervisordClient(socketPath: server.path, callTimeout: .seconds(5)).call("supervisor.getState")
            }
            #expect(error?.code == .invalidResponse)
            #expect(error?.message.contains("HTTP 401 Unauthorized") == true)
            #expect(error?.message.contains("username/password") == true)
            _ = try await request.value()
        }
    }

    /// A call never waits past its deadline, even when the peer accepts and stays silent.
    @Test func aSilentPeerTimesOutAtTheCallDeadline() async throws {
        try await withListeningSocket { server in
            let client = SupervisordClient(socketPath: server.path, callTimeout: .milliseconds(300))
            let started = ContinuousClock.now
            let error = await #expect(throws: SupervisordError.self) { try await client.stopProcess("stack-app") }
            #expect(error?.code == .timedOut)
            #expect(error?.message.contains("supervisor.stopProcess(\"stack-app\", true)") == true)
            // Not the 30 s default, not forever. The bound stays below the default but is
            // loose: a 2-core machine running the whole suite can stall a task for seconds.
            #expect(ContinuousClock.now - started < .seconds(25))
        }
    }

    /// Cancelling the caller interrupts a call that is waiting for its reply.
    @Test func cancellationInterruptsAWaitingCall() async throws {
        try await withListeningSocket { server in
            let client = SupervisordClient(socketPath: server.path, callTimeout: .seconds(60))
            let call = Task { try await client.state() }
            try await server.waitForPendingConnection()
            let started = ContinuousClock.now
            call.cancel()
            let result = await call.result
            #expect(ContinuousClock.now - started < .seconds(10))  // well before the 60 s call timeout
            #expect(throws: CancellationError.self) { try result.get() }
        }
    }

    /// A socket file nobody listens on (supervisord died) is refused with a hint.
    @Test func aStaleSocketFileIsReportedAsRefused() async throws {
        let directory = try TemporaryDirectory(prefix: "svt")
        defer { directory.remove() }
        let path = directory.file("s.sock")
        let fd = try bindUnixSocket(path)
        close(fd)  // the file stays, nobody listens
        let error = await #expect(throws: SupervisordError.self) {
            try await SupervisordClient(socketPath: path, callTimeout: .seconds(2)).state()
        }
        #expect(error?.code == .socketUnavailable)
        #expect(error?.errno == ECONNREFUSED)
        #expect(error?.message.contains(path) == true)
    }

    @Test func aSocketPathTooLongForSunPathIsRejected() async throws {
        let path = "/tmp/" + String(repeating: "x", count: 120) + "/s.sock"
        let error = await #expect(throws: SupervisordError.self) {
            try await SupervisordClient(socketPath: path).state()
        }
        #expect(error?.code == .invalidRequest)
    }
}

// MARK: a listening socket with canned replies

struct ListeningSocket: Sendable {
    let path: String
    let descriptor: Int32

    /// Returns once a client has connected (its connection waits in the backlog).
    func waitForPendingConnection() async throws {
        let listener = descriptor
        try await BlockingCall.run {
            var ready = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, 30_000) == 1 else { throw StackError(.systemCall, "no client connected") }
        }
    }

    /// Starts answering at once, on its own thread (never waiting for a test-pool thread,
    /// which a busy machine may not give within the client's deadline): accepts one
    /// connection, reads the request (head and Content-Length body), writes `reply`,
    /// closes. `value()` returns the request bytes.
    func answering(with reply: [UInt8]) -> PendingAnswer {
        let listener = descriptor
        let (stream, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
        BlockingCall.detach {
            do {
                continuation.yield(try answerOnceBlocking(listener: listener, reply: reply))
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        return PendingAnswer(stream: stream)
    }

    struct PendingAnswer: Sendable {
        let stream: AsyncThrowingStream<[UInt8], any Error>
        func value() async throws -> [UInt8] {
            for try await request in stream { return request }
            throw StackError(.systemCall, "the canned server ended without an answer")
        }
    }

    private func answerOnceBlocking(listener: Int32, reply: [UInt8]) throws -> [UInt8] {
        var ready = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard poll(&ready, 1, 30_000) == 1 else { throw StackError(.systemCall, "no client connected") }
        // Close-on-exec: a process spawned meanwhile by another test must not inherit the
        // connection and keep it open after we close it (the client would never see EOF).
        let connection = cs_accept_cloexec(listener)
        guard connection >= 0 else { throw StackError.systemCall("accept", errno: -connection) }
        defer { close(connection) }
        var request: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while !isComplete(request) {
            var readable = pollfd(fd: connection, events: Int16(POLLIN), revents: 0)
            guard poll(&readable, 1, 30_000) == 1 else { throw StackError(.systemCall, "request incomplete") }
            let n = chunk.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            request += chunk[0..<n]
        }
        try POSIX.writeAll(connection, reply, context: "canned reply")
        return request
    }

    private func isComplete(_ request: [UInt8]) -> Bool {
        let text = String(decoding: request, as: UTF8.self)
        guard let end = text.firstRange(of: "\r\n\r\n") else { return false }
        let head = text[..<end.lowerBound].lowercased()
        guard let lengthLine = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
              let length = Int(lengthLine.dropFirst("content-length:".count).filter { !$0.isWhitespace })
        else { return true }
        return text[end.upperBound...].utf8.count >= length
    }
}

func bindUnixSocket(_ path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw StackError.systemCall("socket", errno: errno) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard rc == 0 else {
        let failure = errno
        close(fd)
        throw StackError.systemCall("bind \(path)", errno: failure)
    }
    return fd
}

/// A listening unix socket in a fresh directory, closed and removed after `body`.
func withListeningSocket(_ body: (ListeningSocket) async throws -> Void) async throws {
    let directory = try TemporaryDirectory(prefix: "svt")
    defer { directory.remove() }
    let path = directory.file("s.sock")
    let fd = try bindUnixSocket(path)
    defer { close(fd) }
    guard listen(fd, 8) == 0 else { throw StackError.systemCall("listen \(path)", errno: errno) }
    try await body(ListeningSocket(path: path, descriptor: fd))
}
