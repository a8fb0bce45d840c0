/// A command reply from QEMU or the guest agent: its `id`, QEMU's error if the command
/// failed, and the parsed `return` member, which the caller decodes into the type it
/// expects.
struct ProtocolReply: Sendable {
    struct ErrorBody: Decodable, Sendable, Equatable {
        let `class`: String
        let desc: String
    }

    let id: JSONValue?
    let error: ErrorBody?
    /// The `return` member (nil in an error reply).
    let value: JSONValue?

    /// Classifies a parsed message's members as a reply; nil when it is not one.
    init?(members: [String: JSONValue]) {
        let value = members["return"]
        let errorValue = members["error"]
        guard value != nil || errorValue != nil else { return nil }
        self.id = members["id"]
        self.value = value
        if let errorValue {
            guard let body = try? JSONValueDecoder.decode(ErrorBody.self, from: errorValue) else { return nil }
            self.error = body
        } else {
            self.error = nil
        }
    }

    /// Decodes the `return` member as `T`.
    func decodeReturn<T: Decodable>(_ type: T.Type, command: String, peer: String) throws(QEMUControlError) -> T {
        do {
            return try JSONValueDecoder.decode(T.self, from: value ?? .null)
        } catch {
            throw QEMUControlError(.protocolViolation,
                                   "\(peer): unexpected reply to \(command) (\(error)): \(ProtocolReply.excerpt(value ?? .null))",
                                   command: command)
        }
    }

    /// Throws QEMU's error, if the reply carries one.
    func check(command: String, peer: String) throws(QEMUControlError) {
        if let error {
            throw QEMUControlError.commandFailed(command, peer: peer, qemuClass: error.class, description: error.desc)
        }
    }

    /// The start of a value's JSON text, for error messages and logs.
    static func excerpt(_ value: JSONValue, limit: Int = 200) -> String {
        excerpt(Array(value.description.utf8), limit: limit)
    }

    static func excerpt(_ line: [UInt8], limit: Int = 200) -> String {
        let text = String(decoding: line.prefix(limit), as: UTF8.self)
        return line.count > limit ? text + "…" : text
    }
}
