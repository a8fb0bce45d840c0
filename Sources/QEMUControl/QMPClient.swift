import Logging
import Synchronization

/// A QMP (QEMU Machine Protocol) connection over QEMU's monitor socket.
///
/// `connect` reads the greeting and negotiates `qmp_capabilities`. Every command carries
/// a unique `id` and is answered by the reply with that `id` only, so any number of
/// commands may be in flight from any number of tasks, and events arriving in between
/// are never taken for replies. Events nobody is waiting for are buffered (bounded) and
/// can be awaited later with a predicate. Every call has a deadline; when QEMU exits,
/// every pending call fails at once with `connectionClosed`.
public final class QMPClient: Sendable {
    public struct Configuration: Sendable {
        /// Deadline for a call that is given none.
        public var defaultTimeout: Duration
        /// Largest accepted message (a `query-qmp-schema` reply is ~200 KB).
        public var maximumMessageSize: Int
        /// Events kept for later `waitForEvent` calls; the oldest are dropped beyond this.
        public var eventBufferLimit: Int
        public var logger: Logger

        public init(defaultTimeout: Duration = .seconds(30), maximumMessageSize: Int = 64 << 20,
                    eventBufferLimit: Int = 4096, logger: Logger = Logger(label: "QEMUControl.QMP")) {
            self.defaultTimeout = defaultTimeout
            self.maximumMessageSize = maximumMessageSize
            self.eventBufferLimit = eventBufferLimit
            self.logger = logger
        }
    }

    /// The monitor socket's path.
    public let path: String
    /// QEMU's greeting (version, offered capabilities).
    public let greeting: QMPGreeting
    public var version: QEMUVersion { greeting.version }

    let configuration: Configuration
    private let channel: MessageChannel<QMPMessage>
    private let lastID = Atomic<Int64>(0)
    private var label: String { channel.configuration.label }

    /// Connects to `path` (retrying while QEMU is still creating it), reads the greeting
    /// and leaves capabilities negotiation mode, all before `deadline`.
    public static func connect(path: String, configuration: Configuration = Configuration(),
                               deadline: ContinuousClock.Instant? = nil) async throws -> QMPClient {
        let deadline = deadline ?? .now + configuration.defaultTimeout
        let fd = try await UnixSocket.connect(path: path, deadline: deadline)
        let label = "QMP \(path)"
        let logger = configuration.logger
        let channel = try MessageChannel<QMPMessage>(
            socket: fd,
            configuration: .init(label: label, maximumMessageSize: configuration.maximumMessageSize,
                                 recognizesDelimiter: false, backlogLimit: configuration.eventBufferLimit, logger: logger),
            decode: { item, sequence in
                guard case .line(let line) = item else { return nil }
                guard let message = QMPMessage.decode(line, sequence: sequence) else {
                    logger.warning("\(label): ignoring a message that is not QMP: \(ProtocolReply.excerpt(line))")
                    return nil
                }
                return message
            },
            retainUnclaimed: { message in
                switch message {
                case .event, .greeting: return true
                case .reply(let reply):
                    // The reply to a call that timed out or was cancelled.
                    logger.debug("\(label): dropping a reply nobody waits for (id \(reply.id?.description ?? "none"))")
                    return false
                }
            })
        do {
            // QEMU serves one QMP client per monitor: a second one is accepted by the
            // kernel but greeted only when the first leaves.
            let slot = try channel.register(purpose: "greeting (is another client connected to this monitor?)",
                                            deadline: deadline, searchBacklog: true) {
                if case .greeting = $0 { return true }
                return false
            }
            guard case .greeting(let greeting) = try await channel.wait(slot) else {
                preconditionFailure("greeting slot matched another message")
            }
            let client = QMPClient(path: path, greeting: greeting, configuration: configuration, channel: channel)
            try await client.run("qmp_capabilities", deadline: deadline)
            logger.debug("\(label): connected to QEMU \(greeting.version) (\(greeting.version.package))")
            return client
        } catch {
            channel.close()
            throw error
        }
    }

    private init(path: String, greeting: QMPGreeting, configuration: Configuration, channel: MessageChannel<QMPMessage>) {
        self.path = path
        self.greeting = greeting
        self.configuration = configuration
        self.channel = channel
    }

    deinit {
        channel.close()
    }

    /// Closes the connection; pending calls fail with `connectionClosed`.
    public func close() {
        channel.close()
    }

    /// Calls and event waits not yet answered.
    var waitingCount: Int { channel.waitingCount }

    /// Why the connection ended, once it has.
    public var closedError: QEMUControlError? { channel.closedError }

    // MARK: commands

    /// Runs `command` with `arguments` (encoded by `JSONEncoder`), attaching
    /// `descriptors` via SCM_RIGHTS, and decodes its `return` as `R`.
    public func execute<A: Encodable & Sendable, R: Decodable>(
        _ command: String, arguments: A, passing descriptors: [Int32] = [], returning: R.Type,
        deadline: ContinuousClock.Instant? = nil
    ) async throws -> R {
        let reply = try await perform(command, arguments: arguments, descriptors: descriptors, deadline: deadline)
        return try reply.decodeReturn(R.self, command: command, peer: label)
    }

    /// Runs `command` without arguments and decodes its `return` as `R`.
    public func execute<R: Decodable>(_ command: String, returning: R.Type,
                                      deadline: ContinuousClock.Instant? = nil) async throws -> R {
        let reply = try await perform(command, arguments: NoArguments?.none, descriptors: [], deadline: deadline)
        return try reply.decodeReturn(R.self, command: command, peer: label)
    }

    /// Runs `command` and returns its `return` as a `JSONValue`.
    @discardableResult
    public func execute<A: Encodable & Sendable>(_ command: String, arguments: A, passing descriptors: [Int32] = [],
                                                 deadline: ContinuousClock.Instant? = nil) async throws -> JSONValue {
        try await execute(command, arguments: arguments, passing: descriptors, returning: JSONValue.self, deadline: deadline)
    }

    /// Runs `command` without arguments and returns its `return` as a `JSONValue`.
    @discardableResult
    public func execute(_ command: String, deadline: ContinuousClock.Instant? = nil) async throws -> JSONValue {
        try await execute(command, returning: JSONValue.self, deadline: deadline)
    }

    /// Runs a command whose result does not matter (only its success).
    func run<A: Encodable & Sendable>(_ command: String, arguments: A?, passing descriptors: [Int32] = [],
                                      deadline: ContinuousClock.Instant?) async throws {
        _ = try await perform(command, arguments: arguments, descriptors: descriptors, deadline: deadline)
    }

    func run(_ command: String, deadline: ContinuousClock.Instant?) async throws {
        _ = try await perform(command, arguments: NoArguments?.none, descriptors: [], deadline: deadline)
    }

    private func perform<A: Encodable & Sendable>(_ command: String, arguments: A?, descriptors: [Int32],
                                                  deadline: ContinuousClock.Instant?) async throws -> ProtocolReply {
        let id = JSONValue.int(lastID.add(1, ordering: .relaxed).newValue)
        let line = try QMPRequest(execute: command, arguments: arguments, id: id).encodedLine()
        let slot = try channel.register(purpose: "reply to \(command)", deadline: deadline ?? .now + configuration.defaultTimeout) {
            $0.isReply(to: id)
        }
        do {
            try channel.send(line, descriptors: descriptors)
        } catch {
            channel.abandon(slot)
            throw error
        }
        guard case .reply(let reply) = try await channel.wait(slot) else {
            preconditionFailure("reply slot matched another message")
        }
        try reply.check(command: command, peer: label)
        return reply
    }

    // MARK: events

    /// The arrival position of the latest message: pass it as `after:` to wait only for
    /// events received later (e.g. take it before `migrate`, so a `MIGRATION` event of an
    /// earlier attempt is not mistaken for this one's).
    public var eventCursor: UInt64 { channel.cursor }

    /// Waits for the first event `predicate` accepts — a buffered one first, else the
    /// next to arrive (no polling) — and consumes it. With `after`, only events received
    /// after that cursor qualify. `predicate` runs on the connection's I/O thread while
    /// it holds its lock: keep it a pure test of the event (no calls on this client).
    public func waitForEvent(after cursor: UInt64? = nil, deadline: ContinuousClock.Instant? = nil,
                             description: String = "matching event",
                             where predicate: @escaping @Sendable (QMPEvent) -> Bool) async throws -> QMPEvent {
        let slot = try channel.register(purpose: description, deadline: deadline ?? .now + configuration.defaultTimeout,
                                        searchBacklog: true) { message in
            guard let event = message.event else { return false }
            if let cursor, event.sequence <= cursor { return false }
            return predicate(event)
        }
        guard let event = try await channel.wait(slot).event else {
            preconditionFailure("event slot matched another message")
        }
        return event
    }

    /// Waits for the next event named `name` (see `waitForEvent(after:deadline:where:)`).
    public func waitForEvent(_ name: String, after cursor: UInt64? = nil,
                             deadline: ContinuousClock.Instant? = nil) async throws -> QMPEvent {
        try await waitForEvent(after: cursor, deadline: deadline, description: "\(name) event") { $0.name == name }
    }

    /// Removes and returns the buffered events `predicate` accepts (all by default).
    @discardableResult
    public func takeBufferedEvents(where predicate: @escaping @Sendable (QMPEvent) -> Bool = { _ in true }) -> [QMPEvent] {
        channel.takeFromBacklog { $0.event.map(predicate) ?? false }.compactMap(\.event)
    }
}
