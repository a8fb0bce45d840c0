import CSystem
import Logging
import StackCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// §1.4-3: the mock-OAuth forwarder, in-process instead of
/// `socat TCP-LISTEN:32202,fork,reuseaddr TCP:host.docker.internal:32202`.
///
/// `init` binds and listens (so a taken port fails at once, before anything else
/// starts); `run()` forwards until its task is cancelled, then closes the listener and
/// every connection before returning. The entrypoint runs it as one child task next to
/// its process supervisor.
///
/// Design: one event-loop thread multiplexing every socket with `poll(2)`. Per
/// connection and direction there is one fixed buffer (`bufferSize`); a side is read
/// only while its buffer has room and written only while it holds data, so a slow
/// reader stalls its writer through TCP flow control instead of growing memory
/// (backpressure), and a thread never spins: poll sleeps until a socket is ready, a
/// connect deadline passes, or the loop is woken through a pipe (stop, resolved name).
/// Unlike a thread per direction, the thread count does not grow with connections, and
/// stopping is one wake-up after which the loop itself closes everything it owns. Name
/// resolution (`getaddrinfo`, which may block on DNS) runs per connection on a
/// short-lived helper thread so it never stalls the loop; connects are non-blocking.
/// A socket's end of stream becomes `shutdown(SHUT_WR)` on the other socket, and the
/// other direction keeps flowing until it ends too (half-close).
public final class TCPForwarder: Sendable {
    public struct Configuration: Sendable {
        public var listenHost: String
        public var listenPort: UInt16
        public var upstreamHost: String
        public var upstreamPort: UInt16
        /// Bytes buffered per direction per connection.
        public var bufferSize: Int
        /// Connections beyond this wait in the listen backlog until one ends.
        public var maximumConnections: Int
        /// How long one upstream connect attempt may take.
        public var connectTimeout: Duration

        public init(listenHost: String = "0.0.0.0", listenPort: UInt16 = 32202,
                    upstreamHost: String = "host.docker.internal", upstreamPort: UInt16 = 32202,
                    bufferSize: Int = 64 * 1024, maximumConnections: Int = 256, connectTimeout: Duration = .seconds(10)) {
            self.listenHost = listenHost
            self.listenPort = listenPort
            self.upstreamHost = upstreamHost
            self.upstreamPort = upstreamPort
            self.bufferSize = bufferSize
            self.maximumConnections = maximumConnections
            self.connectTimeout = connectTimeout
        }

        /// `STACK_FORWARD_MOCK_OAUTH_SERVER=true`: 0.0.0.0:32202 → host.docker.internal:32202.
        public static let mockOAuth = Configuration()
    }

    public let configuration: Configuration
    /// The port actually bound (differs from `listenPort` when that is 0).
    public let port: UInt16
    private let logger: Logger
    private enum ListenerState {
        case ready(Int32)
        case taken
    }
    private let listener: Mutex<ListenerState>

    /// Binds and listens. Throws `StackError` (e.g. the port is taken) naming the address.
    public init(configuration: Configuration, logger: Logger = Logger(label: "tcp-forwarder")) throws {
        guard configuration.bufferSize > 0, configuration.maximumConnections > 0 else {
            throw StackError(.invalidConfiguration, "TCP forwarder: bufferSize and maximumConnections must be positive")
        }
        let fd = try Self.listen(host: configuration.listenHost, port: configuration.listenPort)
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.port = SocketAddress(storage: address, length: length).port
        self.configuration = configuration
        self.logger = logger
        self.listener = Mutex(.ready(fd))
    }

    deinit {
        if case .ready(let fd) = listener.withLock({ $0 }) { close(fd) }
    }

    /// Forwards connections until the calling task is cancelled, then closes the
    /// listener and all connections and returns. Runs at most once.
    public func run() async throws {
        let (configuration, logger, port) = (self.configuration, self.logger, self.port)
        let fd: Int32 = try listener.withLock { state in
            guard case .ready(let fd) = state else {
                throw StackError(.invalidConfiguration, "TCP forwarder on port \(port) was already run")
            }
            state = .taken
            return fd
        }
        let control: LoopControl
        do {
            control = try LoopControl()
        } catch {
            close(fd)
            throw error
        }
        logger.info("forwarding \(configuration.listenHost):\(port) to \(configuration.upstreamHost):\(configuration.upstreamPort)")
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                OSThread.detached(stackSize: 1 << 20) {
                    var loop = ForwardingLoop(listener: fd, port: port, control: control, configuration: configuration, logger: logger)
                    continuation.resume(with: Result { try loop.run() })
                }
            }
        } onCancel: {
            control.requestStop()
        }
        logger.info("stopped forwarding port \(port)")
    }

    private static func listen(host: String, port: UInt16) throws -> Int32 {
        let addresses = try SocketAddress.resolve(host: host, port: port, passive: true)
        var lastError: Int32 = EADDRNOTAVAIL
        for address in addresses {
            let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { lastError = errno; continue }
            var on: Int32 = 1
            _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
            if address.bind(fd) == 0 && Glibc.listen(fd, 128) == 0 { return fd }
            lastError = errno
            close(fd)
        }
        let hint = lastError == EADDRINUSE ? "; another process listens on port \(port)" : ""
        throw StackError(.systemCall, "listen on \(host):\(port): \(StackError.describe(errno: lastError))\(hint)", errno: lastError)
    }
}

// MARK: - the loop's mailbox

/// What other threads may tell the loop: stop, or a name resolution finished. Writes to
/// the wake pipe happen under the lock and only while it is open, so a late resolver
/// can never write into a descriptor number the loop has already closed and reused.
private final class LoopControl: Sendable {
    private struct State {
        var stopRequested = false
        var closed = false
        var resolved: [(id: Int, result: Result<[SocketAddress], StackError>)] = []
    }
    private let state = Mutex(State())
    let wakeReadEnd: Int32
    private let wakeWriteEnd: Int32

    init() throws {
        var fds: [Int32] = [-1, -1]
        let rc = fds.withUnsafeMutableBufferPointer { cs_pipe_nonblocking($0.baseAddress!) }
        guard rc == 0 else { throw StackError.systemCall("pipe2 (TCP forwarder wake-up)", errno: -rc) }
        wakeReadEnd = fds[0]
        wakeWriteEnd = fds[1]
    }

    func requestStop() {
        state.withLock { state in
            state.stopRequested = true
            wake(state)
        }
    }

    func deliver(id: Int, _ result: Result<[SocketAddress], StackError>) {
        state.withLock { state in
            guard !state.closed else { return }
            state.resolved.append((id, result))
            wake(state)
        }
    }

    /// Empties the pipe and the mailbox.
    func take() -> (stop: Bool, resolved: [(id: Int, result: Result<[SocketAddress], StackError>)]) {
        var sink = [UInt8](repeating: 0, count: 64)
        while sink.withUnsafeMutableBytes({ read(wakeReadEnd, $0.baseAddress, $0.count) }) > 0 {}
        return state.withLock { state in
            defer { state.resolved.removeAll() }
            return (state.stopRequested, state.resolved)
        }
    }

    func close() {
        state.withLock { state in
            state.closed = true
            state.resolved.removeAll()
            _ = Glibc.close(wakeReadEnd)
            _ = Glibc.close(wakeWriteEnd)
        }
    }

    private func wake(_ state: State) {
        guard !state.closed else { return }
        var byte: UInt8 = 1
        _ = write(wakeWriteEnd, &byte, 1)  // a full pipe already means "wake up"
    }
}

// MARK: - the event loop

private struct ForwardingLoop {
    private let listener: Int32
    private let port: UInt16
    private let control: LoopControl
    private let configuration: TCPForwarder.Configuration
    private let logger: Logger
    private var relays: [Int: Relay] = [:]
    private var nextID = 0
    /// Set after EMFILE & co.: accepting resumes then, instead of spinning on a
    /// listener that stays readable.
    private var acceptPausedUntil: ContinuousClock.Instant?

    init(listener: Int32, port: UInt16, control: LoopControl, configuration: TCPForwarder.Configuration, logger: Logger) {
        self.listener = listener
        self.port = port
        self.control = control
        self.configuration = configuration
        self.logger = logger
    }

    mutating func run() throws {
        defer {
            for relay in relays.values { relay.closeAll() }
            relays.removeAll()
            close(listener)
            control.close()
        }
        var descriptors: [pollfd] = []
        var owners: [(relay: Relay, isClient: Bool)?] = []
        while true {
            let (stop, resolved) = control.take()
            if stop { return }
            for (id, result) in resolved {
                guard let relay = relays[id] else { continue }
                switch result {
                case .success(let addresses): connectUpstream(relay, candidates: addresses[...])
                case .failure(let error): fail(relay, "cannot resolve upstream: \(error.message)")
                }
            }
            let now = ContinuousClock.now
            for relay in relays.values {
                if case .connecting(_, let deadline, let remaining) = relay.phase, deadline <= now {
                    relay.discardUpstream()
                    logger.debug("upstream connect timed out", metadata: ["connection": "\(relay.id)"])
                    connectUpstream(relay, candidates: remaining, lastError: ETIMEDOUT)
                }
            }
            if let until = acceptPausedUntil, until <= now { acceptPausedUntil = nil }
            for relay in relays.values where relay.isFinished {
                relay.closeAll()
                relays[relay.id] = nil
            }

            // Build the poll set: wake pipe, listener (when accepting), every interested socket.
            descriptors.removeAll(keepingCapacity: true)
            owners.removeAll(keepingCapacity: true)
            descriptors.append(pollfd(fd: control.wakeReadEnd, events: Int16(POLLIN), revents: 0))
            owners.append(nil)
            let accepting = acceptPausedUntil == nil && relays.count < configuration.maximumConnections
            descriptors.append(pollfd(fd: accepting ? listener : -1, events: Int16(POLLIN), revents: 0))
            owners.append(nil)
            var nextDeadline = acceptPausedUntil
            for relay in relays.values {
                for (fd, events, isClient) in relay.interests() {
                    descriptors.append(pollfd(fd: fd, events: events, revents: 0))
                    owners.append((relay, isClient))
                }
                if case .connecting(_, let deadline, _) = relay.phase {
                    nextDeadline = min(nextDeadline ?? deadline, deadline)
                }
            }

            let ready = poll(&descriptors, nfds_t(descriptors.count), Self.timeout(until: nextDeadline))
            if ready < 0 {
                if errno == EINTR { continue }
                throw StackError.systemCall("poll (TCP forwarder)", errno: errno)
            }
            if ready == 0 { continue }
            if descriptors[1].revents != 0 { acceptConnections() }
            for index in 2..<descriptors.count where descriptors[index].revents != 0 {
                guard let (relay, isClient) = owners[index], relays[relay.id] != nil else { continue }
                handle(relay, isClient: isClient)
            }
        }
    }

    private mutating func acceptConnections() {
        // A bounded batch per wake-up keeps established connections served under a flood.
        for _ in 0..<64 where relays.count < configuration.maximumConnections {
            let client = cs_accept_nonblocking(listener)
            if client < 0 {
                switch -client {
                case EAGAIN, EINTR, ECONNABORTED, EPROTO:
                    return
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    logger.warning("cannot accept a connection on port \(port): \(StackError.describe(errno: -client)); pausing 100 ms")
                    acceptPausedUntil = .now + .milliseconds(100)
                    return
                default:
                    logger.warning("accept on port \(port): \(StackError.describe(errno: -client))")
                    return
                }
            }
            Self.disableNagle(client)
            let relay = Relay(id: nextID, client: client)
            nextID += 1
            relays[relay.id] = relay
            let (host, port, control, id) = (configuration.upstreamHost, configuration.upstreamPort, self.control, relay.id)
            // Resolved per connection, like socat's fork: the upstream may move.
            OSThread.detached(stackSize: 1 << 20) {
                control.deliver(id: id, Result { try SocketAddress.resolve(host: host, port: port, passive: false) }
                    .mapError { $0 as? StackError ?? StackError(.systemCall, "\($0)") })
            }
        }
    }

    /// Tries `candidates` in order; a connect that completes later is finished in `handle`.
    private func connectUpstream(_ relay: Relay, candidates: ArraySlice<SocketAddress>, lastError: Int32 = ECONNREFUSED) {
        var candidates = candidates
        var lastError = lastError
        while let address = candidates.popFirst() {
            let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { lastError = errno; continue }
            if address.connect(fd) == 0 {
                relay.upstreamConnected(fd, bufferSize: configuration.bufferSize)
                Self.disableNagle(fd)
                return
            }
            lastError = errno
            if lastError == EINPROGRESS {
                relay.phase = .connecting(fd: fd, deadline: .now + configuration.connectTimeout, remaining: candidates)
                return
            }
            close(fd)
        }
        fail(relay, "cannot connect to upstream \(configuration.upstreamHost):\(configuration.upstreamPort): \(StackError.describe(errno: lastError))")
    }

    private func handle(_ relay: Relay, isClient: Bool) {
        if case .connecting(let fd, _, let remaining) = relay.phase {
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { error = errno }
            if error == 0 {
                relay.upstreamConnected(fd, bufferSize: configuration.bufferSize)
                Self.disableNagle(fd)
            } else {
                relay.discardUpstream()
                connectUpstream(relay, candidates: remaining, lastError: error)
            }
            return
        }
        relay.transfer(fromClientSide: isClient)
    }

    /// Closes the client: it sees the connection end at once (as with socat).
    private func fail(_ relay: Relay, _ reason: String) {
        logger.warning("\(reason); closing the client connection")
        relay.closeAll()
        relay.phase = .failed
    }

    private static func disableNagle(_ fd: Int32) {
        var on: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    /// A poll timeout in milliseconds, rounded up; -1 (sleep until an event) without a deadline.
    private static func timeout(until deadline: ContinuousClock.Instant?) -> Int32 {
        guard let deadline else { return -1 }
        let (seconds, attoseconds) = (deadline - .now).components
        let milliseconds = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: max(milliseconds, 0))
    }
}

// MARK: - one forwarded connection

private final class Relay {
    enum Phase {
        case resolving
        case connecting(fd: Int32, deadline: ContinuousClock.Instant, remaining: ArraySlice<SocketAddress>)
        case relaying(upstream: Int32)
        case failed
    }

    let id: Int
    private(set) var client: Int32
    var phase: Phase = .resolving
    private var toUpstream = Direction(capacity: 0)
    private var toClient = Direction(capacity: 0)

    init(id: Int, client: Int32) {
        self.id = id
        self.client = client
    }

    var isFinished: Bool {
        switch phase {
        case .failed: true
        case .relaying: toUpstream.isFinished && toClient.isFinished
        case .resolving, .connecting: false
        }
    }

    func upstreamConnected(_ fd: Int32, bufferSize: Int) {
        phase = .relaying(upstream: fd)
        toUpstream = Direction(capacity: bufferSize)
        toClient = Direction(capacity: bufferSize)
    }

    /// Closes a failed upstream attempt (the client stays).
    func discardUpstream() {
        if case .connecting(let fd, _, _) = phase { close(fd) }
        phase = .resolving
    }

    /// The sockets this relay waits on, with their events; none while resolving.
    func interests() -> [(Int32, Int16, Bool)] {
        switch phase {
        case .resolving, .failed:
            return []
        case .connecting(let fd, _, _):
            return [(fd, Int16(POLLOUT), false)]
        case .relaying(let upstream):
            var result: [(Int32, Int16, Bool)] = []
            let clientEvents = (toUpstream.wantsRead ? Int16(POLLIN) : 0) | (toClient.wantsWrite ? Int16(POLLOUT) : 0)
            let upstreamEvents = (toClient.wantsRead ? Int16(POLLIN) : 0) | (toUpstream.wantsWrite ? Int16(POLLOUT) : 0)
            // A socket with nothing to wait for stays out of the set: poll would report
            // its hang-up over and over and turn the loop into a spin.
            if clientEvents != 0 { result.append((client, clientEvents, true)) }
            if upstreamEvents != 0 { result.append((upstream, upstreamEvents, false)) }
            return result
        }
    }

    /// Moves data both ways on one ready socket, then propagates ends of stream. Every
    /// operation is attempted (non-blocking), so an error or hang-up surfaces as a
    /// failed read or write rather than as a poll flag to interpret.
    func transfer(fromClientSide: Bool) {
        guard case .relaying(let upstream) = phase else { return }
        let (ready, other) = fromClientSide ? (client, upstream) : (upstream, client)
        if fromClientSide {
            Relay.pump(from: ready, to: other, &toUpstream, reverse: &toClient)
        } else {
            Relay.pump(from: ready, to: other, &toClient, reverse: &toUpstream)
        }
        toUpstream.shutDownSinkIfDrained(upstream)
        toClient.shutDownSinkIfDrained(client)
    }

    /// `forward` reads `ready` and writes `other`; `reverse` writes `ready`.
    private static func pump(from ready: Int32, to other: Int32, _ forward: inout Direction, reverse: inout Direction) {
        if forward.wantsRead {
            switch forward.receive(from: ready) {
            case .failed: reverse.sinkBroken()
            default: break
            }
        }
        if forward.wantsWrite {
            forward.send(to: other)
        }
        if reverse.wantsWrite {
            if case .failed = reverse.send(to: ready) { forward.sourceUnusable() }
        }
    }

    func closeAll() {
        if client >= 0 { close(client); client = -1 }
        switch phase {
        case .connecting(let fd, _, _): close(fd)
        case .relaying(let upstream): close(upstream)
        default: break
        }
        phase = .failed
    }
}

/// One direction of a relay: a fixed buffer between a source socket and a sink socket.
private struct Direction {
    enum Outcome { case progress, wouldBlock, endOfStream, failed }

    private var buffer: [UInt8]
    private var start = 0
    private var end = 0
    /// The source has not ended (EOF) or failed.
    private var sourceOpen = true
    /// The sink still accepts data.
    private var sinkOpen = true
    /// `shutdown(SHUT_WR)` was sent to the sink.
    private var sinkShutDown = false

    init(capacity: Int) { buffer = [UInt8](repeating: 0, count: capacity) }

    var wantsRead: Bool { sourceOpen && sinkOpen && (end < buffer.count || start > 0) }
    var wantsWrite: Bool { sinkOpen && start < end }
    var isFinished: Bool { !sinkOpen || sinkShutDown }

    mutating func receive(from fd: Int32) -> Outcome {
        if end == buffer.count {  // compact: the unsent bytes move to the front
            buffer.withUnsafeMutableBytes { raw in
                raw.baseAddress!.copyMemory(from: raw.baseAddress! + start, byteCount: end - start)
            }
            end -= start
            start = 0
        }
        let n = buffer.withUnsafeMutableBytes { raw in recv(fd, raw.baseAddress! + end, raw.count - end, 0) }
        if n > 0 {
            end += n
            return .progress
        }
        if n == 0 {
            sourceOpen = false
            return .endOfStream
        }
        if errno == EAGAIN || errno == EINTR { return .wouldBlock }
        sourceOpen = false
        return .failed
    }

    @discardableResult
    mutating func send(to fd: Int32) -> Outcome {
        let n = buffer.withUnsafeBytes { raw in Glibc.send(fd, raw.baseAddress! + start, end - start, Int32(MSG_NOSIGNAL)) }
        if n >= 0 {
            start += n
            if start == end { start = 0; end = 0 }
            return .progress
        }
        if errno == EAGAIN || errno == EINTR { return .wouldBlock }
        sinkBroken()
        return .failed
    }

    /// The sink socket failed: what is buffered for it can never be delivered.
    mutating func sinkBroken() {
        sinkOpen = false
        start = 0
        end = 0
    }

    /// The source socket failed (seen while writing to it): read no more from it.
    mutating func sourceUnusable() { sourceOpen = false }

    /// Half-close: once the source ended and everything was delivered, end the sink's
    /// input too, while the other direction goes on.
    mutating func shutDownSinkIfDrained(_ sink: Int32) {
        guard !sourceOpen, sinkOpen, !sinkShutDown, start == end else { return }
        _ = shutdown(sink, Int32(SHUT_WR))
        sinkShutDown = true
    }
}

// MARK: - addresses and threads

/// A resolved socket address (IPv4 or IPv6).
private struct SocketAddress: Sendable {
    var storage: sockaddr_storage
    var length: socklen_t

    var family: Int32 { Int32(storage.ss_family) }

    var port: UInt16 {
        var copy = storage
        return withUnsafePointer(to: &copy) { pointer in
            switch Int32(storage.ss_family) {
            case AF_INET: pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
            case AF_INET6: pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            default: 0
            }
        }
    }

    func connect(_ fd: Int32) -> Int32 {
        var copy = storage
        return withUnsafePointer(to: &copy) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) } }
    }

    func bind(_ fd: Int32) -> Int32 {
        var copy = storage
        return withUnsafePointer(to: &copy) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) } }
    }

    /// getaddrinfo for TCP; `passive` for a listening address.
    static func resolve(host: String, port: UInt16, passive: Bool) throws -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0 else {
            let reason = rc == EAI_SYSTEM ? StackError.describe(errno: errno) : String(cString: gai_strerror(rc))
            throw StackError(.systemCall, "resolve \(host): \(reason)", errno: rc == EAI_SYSTEM ? errno : nil)
        }
        defer { freeaddrinfo(list) }
        var addresses: [SocketAddress] = []
        var entry = list
        while let info = entry?.pointee {
            if let address = info.ai_addr, Int(info.ai_addrlen) <= MemoryLayout<sockaddr_storage>.size {
                var storage = sockaddr_storage()
                withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: address, count: Int(info.ai_addrlen))) }
                addresses.append(SocketAddress(storage: storage, length: info.ai_addrlen))
            }
            entry = info.ai_next
        }
        guard !addresses.isEmpty else { throw StackError(.systemCall, "resolve \(host): no address") }
        return addresses
    }
}

