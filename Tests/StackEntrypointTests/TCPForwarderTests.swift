import CSystem
import StackCore
import StackEntrypoint
import StackProcess
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The mock-OAuth forwarder over real loopback sockets on ephemeral ports.
@Suite struct TCPForwarderTests {
    /// §1.4-3: several MB through the forwarder and back, byte for byte (an upstream
    /// named by host name, so resolution happens at connect time).
    @Test func largeTransferRoundTripsIntact() async throws {
        let upstream = try UpstreamServer(handler: UpstreamServer.echo)
        defer { upstream.stop() }
        try await withForwarder(upstreamHost: "localhost", upstreamPort: upstream.port) { forwarder in
            // Generated, exchanged and compared on a plain thread: CPU work stays off the test pool.
            let (received, intact) = try await BlockingCall.run {
                let payload = pseudoRandomBytes(count: 8 << 20, seed: 1)
                let fd = try TestSocket.connect(port: forwarder.port)
                defer { close(fd) }
                let echoed = try TestSocket.exchange(fd, sending: payload, deadline: .now + .seconds(60))
                return (echoed.count, echoed == payload)
            }
            #expect(received == 8 << 20)
            #expect(intact)
        }
    }

    /// §1.4-3: many connections at once, each with its own data.
    @Test func servesManyConcurrentConnections() async throws {
        let upstream = try UpstreamServer(handler: UpstreamServer.echo)
        defer { upstream.stop() }
        try await withForwarder(upstreamPort: upstream.port) { forwarder in
            let port = forwarder.port
            let connections = 64
            let mismatches = try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<connections {
                    group.addTask {
                        try await BlockingCall.run {
                            let payload = pseudoRandomBytes(count: 256 << 10, seed: UInt64(index + 10))
                            let fd = try TestSocket.connect(port: port)
                            defer { close(fd) }
                            return try TestSocket.exchange(fd, sending: payload, deadline: .now + .seconds(60)) == payload
                        }
                    }
                }
                var mismatches = 0
                for try await ok in group where !ok { mismatches += 1 }
                return mismatches
            }
            #expect(mismatches == 0)
            #expect(upstream.connectionsAccepted == connections)
        }
    }

    /// Half-close client → upstream: the client shuts its write side, the upstream sees
    /// end of stream, and its reply still reaches the client afterwards.
    @Test func clientHalfCloseStillReceivesTheReply() async throws {
        let upstream = try UpstreamServer { fd in
            guard let received = try? TestSocket.readToEnd(fd, deadline: .now + .seconds(30)) else { return }
            try? POSIX.writeAll(fd, Array("received \(received.count) bytes".utf8), context: "reply")
        }
        defer { upstream.stop() }
        try await withForwarder(upstreamPort: upstream.port) { forwarder in
            let reply = try await BlockingCall.run {
                let fd = try TestSocket.connect(port: forwarder.port)
                defer { close(fd) }
                return try TestSocket.exchange(fd, sending: [UInt8](repeating: 0xA5, count: 300_000), deadline: .now + .seconds(30))
            }
            #expect(String(decoding: reply, as: UTF8.self) == "received 300000 bytes")
        }
    }

    /// Half-close upstream → client: the upstream says hello and shuts its write side;
    /// the client sees end of stream, then still sends, and the upstream receives it all.
    @Test func upstreamHalfCloseStillForwardsTheClientsData() async throws {
        let (reports, reporter) = AsyncStream<Int>.makeStream()
        let upstream = try UpstreamServer { fd in
            try? POSIX.writeAll(fd, Array("hello".utf8), context: "greeting")
            shutdown(fd, Int32(SHUT_WR))
            let received = (try? TestSocket.readToEnd(fd, deadline: .now + .seconds(30)))?.count ?? -1
            reporter.yield(received)
        }
        defer { upstream.stop() }
        try await withForwarder(upstreamPort: upstream.port) { forwarder in
            let greeting = try await BlockingCall.run {
                let fd = try TestSocket.connect(port: forwarder.port)
                defer { close(fd) }
                let greeting = try TestSocket.readToEnd(fd, deadline: .now + .seconds(30))
                // After its end of stream, the client's direction is still open.
                try POSIX.writeAll(fd, [UInt8](repeating: 0x5A, count: 200_000), context: "client")
                shutdown(fd, Int32(SHUT_WR))
                return greeting
            }
            #expect(String(decoding: greeting, as: UTF8.self) == "hello")
            var iterator = reports.makeAsyncIterator()
            #expect(await iterator.next() == 200_000)
        }
    }

    /// An upstream that refuses makes the forwarder close the client promptly; once the
    /// upstream listens (same port), the next connection goes through: the upstream is
    /// connected per connection, not at start.
    @Test func refusedUpstreamClosesTheClientPromptly() async throws {
        let upstream = try TestSocket.bindLoopback()  // bound, not listening: connects are refused
        defer { close(upstream.fd) }
        try await withForwarder(upstreamPort: upstream.port) { forwarder in
            // Timed on the connecting thread itself, so test-pool scheduling does not count.
            let (outcome, elapsed) = try await BlockingCall.run {
                let started = ContinuousClock.now
                let fd = try TestSocket.connect(port: forwarder.port)
                defer { close(fd) }
                let outcome = try TestSocket.readToEnd(fd, deadline: .now + .seconds(60), resetIsEnd: true)
                return (outcome, ContinuousClock.now - started)
            }
            #expect(outcome.isEmpty)
            // Promptly: far below the 60 s read deadline, with room for a loaded machine.
            // (The forwarder itself runs on the shared pool, which a loaded machine can stall
            // for seconds; 30 s still proves the refusal closed it, not the 60 s deadline.)
            #expect(elapsed < .seconds(30))

            guard listen(upstream.fd, 8) == 0 else { throw StackError.systemCall("listen", errno: errno) }
            let listener = upstream.fd
            async let served: Void = BlockingCall.run {
                let connection = cs_accept_cloexec(listener)  // never inherited by a concurrently spawned process
                guard connection >= 0 else { return }
                UpstreamServer.echo(connection)
                close(connection)
            }
            let echoed = try await BlockingCall.run {
                let fd = try TestSocket.connect(port: forwarder.port)
                defer { close(fd) }
                return try TestSocket.exchange(fd, sending: Array("ping".utf8), deadline: .now + .seconds(10))
            }
            await served
            #expect(String(decoding: echoed, as: UTF8.self) == "ping")
        }
    }

    /// A stalled upstream stalls the client (bounded buffering, nothing dropped); when it
    /// reads again, every byte arrives in order.
    @Test func aStalledUpstreamAppliesBackpressureWithoutLoss() async throws {
        let (reports, reporter) = AsyncStream<[UInt8]>.makeStream()
        let gate = try GatePipe()
        let upstream = try UpstreamServer { fd in
            gate.waitOpen()
            reporter.yield((try? TestSocket.readToEnd(fd, deadline: .now + .seconds(60))) ?? [])
        }
        defer { upstream.stop(); gate.close() }
        try await withForwarder(upstreamPort: upstream.port) { forwarder in
            let cap = 256 << 20
            let fd = try await BlockingCall.run { try TestSocket.connect(port: forwarder.port) }
            defer { close(fd) }
            // Write until nothing more is accepted for half a second.
            let written = try await BlockingCall.run { try TestSocket.writeUntilStalled(fd, quiet: .milliseconds(500), cap: cap) }
            #expect(written.count < cap, "the forwarder kept accepting data from a client whose upstream reads nothing")
            gate.open()
            shutdown(fd, Int32(SHUT_WR))
            var iterator = reports.makeAsyncIterator()
            let delivered = await iterator.next()
            #expect(delivered == written)
        }
    }

    /// Cancelling `run()` closes the listener (new connects are refused) and every open
    /// connection (the client sees its end), and `run()` returns.
    @Test func cancellationClosesTheListenerAndOpenConnections() async throws {
        let upstream = try UpstreamServer(handler: UpstreamServer.echo)
        defer { upstream.stop() }
        let forwarder = try TCPForwarder(configuration: .init(listenHost: "127.0.0.1", listenPort: 0, upstreamHost: "127.0.0.1", upstreamPort: upstream.port))
        let running = Task { try await forwarder.run() }
        let port = forwarder.port
        let fd = try await BlockingCall.run { try TestSocket.connect(port: port) }
        defer { close(fd) }
        // Established end to end: a round trip without closing.
        let pong = try await BlockingCall.run { () throws -> [UInt8] in
            try POSIX.writeAll(fd, Array("ping".utf8), context: "client")
            return try TestSocket.read(fd, count: 4, deadline: .now + .seconds(10))
        }
        #expect(pong == Array("ping".utf8))

        running.cancel()
        try await running.value

        let refused = await BlockingCall.run { () -> Int32? in
            do { close(try TestSocket.connect(port: port)); return nil } catch let error as StackError { return error.errno } catch { return nil }
        }
        #expect(refused == ECONNREFUSED)
        let rest = try await BlockingCall.run { try TestSocket.readToEnd(fd, deadline: .now + .seconds(2), resetIsEnd: true) }
        #expect(rest.isEmpty)
    }

    /// A taken port fails at construction, naming the address.
    @Test func aTakenPortFailsAtOnce() throws {
        let first = try TCPForwarder(configuration: .init(listenHost: "127.0.0.1", listenPort: 0, upstreamHost: "127.0.0.1", upstreamPort: 9))
        let error = #expect(throws: StackError.self) {
            _ = try TCPForwarder(configuration: .init(listenHost: "127.0.0.1", listenPort: first.port, upstreamHost: "127.0.0.1", upstreamPort: 9))
        }
        #expect(error?.errno == EADDRINUSE)
        #expect(error?.message.contains("127.0.0.1:\(first.port)") == true)
    }

    /// §1.4-3: the default listens on every interface at 32202 and targets
    /// host.docker.internal:32202; the wildcard listener is reachable over loopback.
    @Test func defaultsMatchTheMockOAuthForwarding() async throws {
        let defaults = TCPForwarder.Configuration.mockOAuth
        #expect(defaults.listenHost == "0.0.0.0" && defaults.listenPort == 32202)
        #expect(defaults.upstreamHost == "host.docker.internal" && defaults.upstreamPort == 32202)

        let upstream = try UpstreamServer(handler: UpstreamServer.echo)
        defer { upstream.stop() }
        var configuration = defaults
        configuration.listenPort = 0
        configuration.upstreamHost = "127.0.0.1"
        configuration.upstreamPort = upstream.port
        let forwarder = try TCPForwarder(configuration: configuration)
        let running = Task { try await forwarder.run() }
        defer { running.cancel() }
        let port = forwarder.port
        let echoed = try await BlockingCall.run {
            let fd = try TestSocket.connect(port: port)
            defer { close(fd) }
            return try TestSocket.exchange(fd, sending: Array("oauth".utf8), deadline: .now + .seconds(60))
        }
        #expect(echoed == Array("oauth".utf8))
    }
}

// MARK: - helpers

/// Runs a forwarder 127.0.0.1:0 → `upstreamHost:upstreamPort` around `body`, cancelling it afterwards.
private func withForwarder(upstreamHost: String = "127.0.0.1", upstreamPort: UInt16, _ body: (TCPForwarder) async throws -> Void) async throws {
    let forwarder = try TCPForwarder(configuration: .init(listenHost: "127.0.0.1", listenPort: 0, upstreamHost: upstreamHost,
                                                          upstreamPort: upstreamPort, connectTimeout: .seconds(5)))
    let running = Task { try await forwarder.run() }
    do {
        try await body(forwarder)
    } catch {
        running.cancel()
        _ = await running.result
        throw error
    }
    running.cancel()
    try await running.value
}

/// Deterministic bytes (SplitMix64).
private func pseudoRandomBytes(count: Int, seed: UInt64) -> [UInt8] {
    var state = seed
    var bytes = [UInt8](repeating: 0, count: count)
    bytes.withUnsafeMutableBytes { raw in
        var offset = 0
        while offset < count {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            withUnsafeBytes(of: z) { word in
                let n = min(8, count - offset)
                raw.baseAddress!.advanced(by: offset).copyMemory(from: word.baseAddress!, byteCount: n)
            }
            offset += 8
        }
    }
    return bytes
}

/// A blocking loopback server: one thread accepts, one thread per connection runs `handler`.
private final class UpstreamServer: Sendable {
    let port: UInt16
    private let listener: Int32
    private final class Counter: Sendable {
        let value = Mutex(0)
    }
    private let accepted = Counter()

    var connectionsAccepted: Int { accepted.value.withLock { $0 } }

    init(handler: @escaping @Sendable (Int32) -> Void) throws {
        let bound = try TestSocket.bindLoopback()
        guard listen(bound.fd, 128) == 0 else { throw StackError.systemCall("listen", errno: errno) }
        listener = bound.fd
        port = bound.port
        let listener = self.listener
        let accepted = self.accepted
        BlockingCall.detach {
            while true {
                let connection = cs_accept_cloexec(listener)  // never inherited by a concurrently spawned process
                if connection < 0 {
                    if connection == -EINTR || connection == -ECONNABORTED { continue }
                    close(listener)  // stop() shut it down
                    return
                }
                accepted.value.withLock { $0 += 1 }
                BlockingCall.detach {
                    handler(connection)
                    close(connection)
                }
            }
        }
    }

    /// Wakes the accept thread, which then closes the listener.
    func stop() { shutdown(listener, Int32(SHUT_RDWR)) }

    /// Echoes until end of stream, then ends its own direction.
    static let echo: @Sendable (Int32) -> Void = { fd in
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            guard (try? POSIX.writeAll(fd, buffer[0..<n], context: "echo")) != nil else { return }
        }
        shutdown(fd, Int32(SHUT_WR))
    }
}

/// A pipe a thread can block on until the test opens it.
private final class GatePipe: Sendable {
    private let readEnd: Int32
    private let writeEnd: Int32

    init() throws {
        var fds: [Int32] = [-1, -1]
        let rc = fds.withUnsafeMutableBufferPointer { cs_pipe($0.baseAddress!) }
        guard rc == 0 else { throw StackError.systemCall("pipe", errno: -rc) }
        readEnd = fds[0]
        writeEnd = fds[1]
    }

    func waitOpen() {
        var pending = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
        _ = poll(&pending, 1, 60_000)
    }

    func open() {
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)
    }

    func close() {
        _ = Glibc.close(readEnd)
        _ = Glibc.close(writeEnd)
    }
}

private enum TestSocket {
    /// A TCP socket bound to 127.0.0.1 on an ephemeral port (not listening).
    static func bindLoopback() throws -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw StackError.systemCall("socket", errno: errno) }
        var address = loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 ? getsockname(fd, pointer, &length) : -1
            }
        }
        guard rc == 0 else {
            let failure = errno
            close(fd)
            throw StackError.systemCall("bind 127.0.0.1:0", errno: failure)
        }
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    /// A blocking connect to 127.0.0.1:`port`; the error carries errno.
    static func connect(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw StackError.systemCall("socket", errno: errno) }
        var address = loopback(port: port)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let failure = errno
            close(fd)
            throw StackError.systemCall("connect 127.0.0.1:\(port)", errno: failure)
        }
        return fd
    }

    /// Sends `payload` while reading, shuts the write side once all is sent, and returns
    /// everything read until the peer's end of stream.
    static func exchange(_ fd: Int32, sending payload: [UInt8], deadline: ContinuousClock.Instant) throws -> [UInt8] {
        var sent = 0
        var shut = false
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            if sent == payload.count && !shut {
                shutdown(fd, Int32(SHUT_WR))
                shut = true
            }
            var events = Int16(POLLIN)
            if sent < payload.count { events |= Int16(POLLOUT) }
            try waitReady(fd, events: events, deadline: deadline)
            if sent < payload.count {
                let n = payload.withUnsafeBytes { send(fd, $0.baseAddress! + sent, min(payload.count - sent, 64 * 1024), Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                if n > 0 { sent += n } else if n < 0 && errno != EAGAIN && errno != EINTR { throw StackError.systemCall("send", errno: errno) }
            }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { received += buffer[0..<n] }
            if n == 0 { return received }
            if n < 0 && errno != EAGAIN && errno != EINTR { throw StackError.systemCall("recv", errno: errno) }
        }
    }

    /// Reads until end of stream (or, with `resetIsEnd`, a reset).
    static func readToEnd(_ fd: Int32, deadline: ContinuousClock.Instant, resetIsEnd: Bool = false) throws -> [UInt8] {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            try waitReady(fd, events: Int16(POLLIN), deadline: deadline)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { received += buffer[0..<n]; continue }
            if n == 0 { return received }
            if errno == EAGAIN || errno == EINTR { continue }
            if resetIsEnd && errno == ECONNRESET { return received }
            throw StackError.systemCall("recv", errno: errno)
        }
    }

    /// Reads exactly `count` bytes.
    static func read(_ fd: Int32, count: Int, deadline: ContinuousClock.Instant) throws -> [UInt8] {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: count)
        while received.count < count {
            try waitReady(fd, events: Int16(POLLIN), deadline: deadline)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count - received.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { received += buffer[0..<n] } else if n == 0 { break }
        }
        return received
    }

    /// Writes a byte pattern until the socket accepts nothing for `quiet`; returns what was written.
    static func writeUntilStalled(_ fd: Int32, quiet: Duration, cap: Int) throws -> [UInt8] {
        let chunk = pseudoRandomBytes(count: 64 * 1024, seed: 99)
        var written: [UInt8] = []
        while written.count < cap {
            var ready = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let (seconds, attoseconds) = quiet.components
            if poll(&ready, 1, Int32(seconds * 1000 + attoseconds / 1_000_000_000_000_000)) == 0 { break }
            let n = chunk.withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n > 0 { written += chunk[0..<n] } else if n < 0 && errno != EAGAIN && errno != EINTR { throw StackError.systemCall("send", errno: errno) }
        }
        return written
    }

    private static func waitReady(_ fd: Int32, events: Int16, deadline: ContinuousClock.Instant) throws {
        while true {
            let remaining = deadline - .now
            guard remaining > .zero else { throw StackError(.systemCall, "socket \(fd): deadline passed") }
            var ready = pollfd(fd: fd, events: events, revents: 0)
            let (seconds, attoseconds) = remaining.components
            let rc = poll(&ready, 1, Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1))
            if rc > 0 { return }
            if rc < 0 && errno != EINTR { throw StackError.systemCall("poll", errno: errno) }
        }
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }
}
