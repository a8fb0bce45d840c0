#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One command as it goes on the wire: `{"execute":…,"arguments":…,"id":…}` plus a
/// line end, always produced by `JSONEncoder` — never by string formatting, so paths
/// and values containing quotes, backslashes or newlines are carried exactly.
/// The same shape serves the guest agent (which also echoes `id`).
struct QMPRequest<Arguments: Encodable>: Encodable {
    let execute: String
    let arguments: Arguments?
    let id: JSONValue?

    /// The encoded line (`prefix` bytes first: QGA's 0xFF sync delimiter).
    func encodedLine(prefix: [UInt8] = []) throws(QEMUControlError) -> [UInt8] {
        let data: Data
        do {
            data = try JSONCoding.encoder().encode(self)
        } catch {
            throw QEMUControlError(.invalidArgument, "cannot encode the arguments of \(execute): \(error)", command: execute)
        }
        var line = prefix
        line.reserveCapacity(prefix.count + data.count + 1)
        line.append(contentsOf: data)
        line.append(0x0A)
        return line
    }
}

/// The `Arguments` of a command that takes none (encodes as an absent member).
public struct NoArguments: Encodable, Sendable {
    public init() {}
}

extension QMPRequest where Arguments == NoArguments {
    init(execute: String, id: JSONValue?) {
        self.init(execute: execute, arguments: nil, id: id)
    }
}
