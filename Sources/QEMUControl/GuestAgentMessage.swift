import Synchronization

/// What the guest agent's side of the chardev delivers.
enum GuestAgentMessage: Sendable {
    /// `reply` came right after a 0xFF delimiter (as the guest-sync-delimited reply does);
    /// `syncValue` is its `return` when that is a bare integer and it carries no `id`.
    case reply(ProtocolReply, followsDelimiter: Bool, syncValue: Int64?)

    /// Builds the decoder for one connection: it remembers whether the previous item
    /// was a delimiter (the I/O thread calls it for every item, in order).
    static func makeDecoder() -> @Sendable (FramedItem, UInt64) -> GuestAgentMessage? {
        let afterDelimiter = Mutex(false)
        return { item, _ in
            switch item {
            case .delimiter:
                afterDelimiter.withLock { $0 = true }
                return nil
            case .line(let line):
                let follows = afterDelimiter.withLock { flag in
                    defer { flag = false }
                    return flag
                }
                guard case .object(let members)? = try? JSONParser.parse(line),
                      let reply = ProtocolReply(members: members) else {
                    return nil
                }
                var syncValue: Int64?
                if reply.id == nil, reply.error == nil, case .int(let value)? = reply.value {
                    syncValue = value
                }
                return .reply(reply, followsDelimiter: follows, syncValue: syncValue)
            }
        }
    }

    func isReply(to id: JSONValue) -> Bool {
        if case .reply(let reply, _, _) = self { return reply.id == id }
        return false
    }

    var reply: ProtocolReply {
        switch self {
        case .reply(let reply, _, _): reply
        }
    }
}
