/// An asynchronous QMP event (`STOP`, `RESUME`, `SHUTDOWN`, `MIGRATION`, …).
public struct QMPEvent: Sendable, Equatable {
    public struct Timestamp: Decodable, Sendable, Equatable {
        public let seconds: Int64
        public let microseconds: Int64
    }

    public let name: String
    /// The event's `data` member (`.null` when it has none).
    public let data: JSONValue
    /// QEMU's wall-clock time of the event.
    public let timestamp: Timestamp?
    /// Arrival order on this connection; compare with `QMPClient.eventCursor`.
    public let sequence: UInt64

    public init(name: String, data: JSONValue = .null, timestamp: Timestamp? = nil, sequence: UInt64 = 0) {
        self.name = name
        self.data = data
        self.timestamp = timestamp
        self.sequence = sequence
    }

    /// For `MIGRATION` events: the new migration status.
    public var migrationStatus: MigrationStatus? {
        guard name == "MIGRATION", let status = data["status"]?.stringValue else { return nil }
        return MigrationStatus(status)
    }
}

/// What a QMP connection receives.
enum QMPMessage: Sendable {
    case greeting(QMPGreeting)
    case reply(ProtocolReply)
    case event(QMPEvent)

    /// Classifies one line; nil for something that is not QMP (logged by the caller).
    static func decode(_ line: [UInt8], sequence: UInt64) -> QMPMessage? {
        guard let envelope = MessageEnvelope.decode(line) else { return nil }
        if let greeting = envelope.QMP { return .greeting(greeting) }
        if let name = envelope.event {
            return .event(QMPEvent(name: name, data: envelope.data ?? .null, timestamp: envelope.timestamp, sequence: sequence))
        }
        if envelope.hasReturn || envelope.error != nil {
            return .reply(ProtocolReply(id: envelope.id, error: envelope.error, line: line))
        }
        return nil
    }

    var event: QMPEvent? {
        if case .event(let event) = self { return event }
        return nil
    }

    func isReply(to id: JSONValue) -> Bool {
        if case .reply(let reply) = self { return reply.id == id }
        return false
    }
}
