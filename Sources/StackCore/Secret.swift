import CSystem

/// A secret value: 64 hexadecimal characters.
///
/// Its `description` is `<redacted>`, so interpolating one into a log line, an error or
/// a test failure never reveals it; the value is reached only through `unredacted`,
/// which makes every place that needs the real bytes easy to find.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public static let length = 64

    public let unredacted: String

    /// Validates `value` as hex64 (either case). `name` is used in the error only.
    public init(validating value: String, name: String) throws {
        if value.isEmpty {
            throw StackError(.invalidSecret, "\(name) is missing or empty")
        }
        guard value.utf8.count == Secret.length, Hex.isHex(value) else {
            throw StackError(.invalidSecret, "\(name) is not a 64-character hex string")
        }
        self.unredacted = value
    }

    private init(trusted: String) { self.unredacted = trusted }

    /// 32 bytes from the kernel CSPRNG (getrandom), as 64 lower-case hex characters.
    public static func generate() -> Secret {
        Secret(trusted: Hex.encode(randomBytes(32)))
    }

    /// `count` bytes from the kernel CSPRNG (getrandom).
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let rc = bytes.withUnsafeMutableBytes { cs_getrandom($0.baseAddress, $0.count) }
        // getrandom only fails for invalid arguments or a missing syscall; continuing
        // with a weak value would be worse than stopping.
        precondition(rc == 0, "getrandom failed: \(StackError.describe(errno: -rc))")
        return bytes
    }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "Secret(<redacted>)" }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
