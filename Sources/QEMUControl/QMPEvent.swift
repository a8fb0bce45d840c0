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
        guard case .object(let members)? = try? JSONParser.parse(line) else { return nil }
        if let banner = members["QMP"] {
            return (try? JSONValueDecoder.decode(QMPGreeting.self, from: banner)).map(QMPMessage.greeting)
        }
        if case .string(let name)? = members["event"] {
            let timestamp = members["timestamp"].flatMap { try? JSONValueDecoder.decode(QMPEvent.Timestamp.self, from: $0) }
            return .event(QMPEvent(name: name, data: members["data"] ?? .null, timestamp: timestamp, sequence: sequence))
        }
        return ProtocolReply(members: members).map(QMPMessage.reply)
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
