#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A command reply from QEMU or the guest agent: its `id`, QEMU's error if the command
/// failed, and the raw line, from which the caller decodes `return` into the type it
/// expects (so a large result is parsed once, straight into its final shape).
struct ProtocolReply: Sendable {
    struct ErrorBody: Decodable, Sendable, Equatable {
        let `class`: String
        let desc: String
    }

    let id: JSONValue?
    let error: ErrorBody?
    let line: [UInt8]

    private struct ReturnEnvelope<T: Decodable>: Decodable {
        let `return`: T
    }

    /// Decodes the `return` member as `T`.
    func decodeReturn<T: Decodable>(_ type: T.Type, command: String, peer: String) throws(QEMUControlError) -> T {
        do {
            return try JSONCoding.decoder().decode(ReturnEnvelope<T>.self, from: Data(line)).return
        } catch {
            throw QEMUControlError(.protocolViolation,
                                   "\(peer): unexpected reply to \(command) (\(error)): \(ProtocolReply.excerpt(line))",
                                   command: command)
        }
    }

    /// Throws QEMU's error, if the reply carries one.
    func check(command: String, peer: String) throws(QEMUControlError) {
        if let error {
            throw QEMUControlError.commandFailed(command, peer: peer, qemuClass: error.class, description: error.desc)
        }
    }

    /// The first bytes of a message, for error messages.
    static func excerpt(_ line: [UInt8], limit: Int = 200) -> String {
        let text = String(decoding: line.prefix(limit), as: UTF8.self)
        return line.count > limit ? text + "…" : text
    }
}

/// The members every incoming QMP/QGA message may carry; `return` is only noted, so a
/// large result is not decoded twice.
struct MessageEnvelope: Decodable {
    let QMP: QMPGreeting?
    let event: String?
    let data: JSONValue?
    let timestamp: QMPEvent.Timestamp?
    let id: JSONValue?
    let error: ProtocolReply.ErrorBody?
    let hasReturn: Bool

    private enum CodingKeys: String, CodingKey {
        case QMP, event, data, timestamp, id, error, `return`
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        QMP = try container.decodeIfPresent(QMPGreeting.self, forKey: .QMP)
        event = try container.decodeIfPresent(String.self, forKey: .event)
        data = try container.decodeIfPresent(JSONValue.self, forKey: .data)
        timestamp = try container.decodeIfPresent(QMPEvent.Timestamp.self, forKey: .timestamp)
        id = try container.decodeIfPresent(JSONValue.self, forKey: .id)
        error = try container.decodeIfPresent(ProtocolReply.ErrorBody.self, forKey: .error)
        hasReturn = container.contains(.return)
    }

    static func decode(_ line: [UInt8]) -> MessageEnvelope? {
        try? JSONCoding.decoder().decode(MessageEnvelope.self, from: Data(line))
    }
}
