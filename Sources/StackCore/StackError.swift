#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The error every StackCore API throws: a stable `code` to match on, the `errno`
/// when a system call failed, and a one-line message that says what failed and where.
public struct StackError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A system call failed; `errno` says why.
        public static let systemCall = Code("system-call")
        /// An env file does not follow the strict `KEY=VALUE` grammar.
        public static let invalidEnvFile = Code("invalid-env-file")
        /// A value meant to be written into an env file cannot be represented there.
        public static let unrepresentableValue = Code("unrepresentable-value")
        /// A secret is missing, malformed or a known placeholder.
        public static let invalidSecret = Code("invalid-secret")
        /// Input exceeded a stated bound.
        public static let tooLarge = Code("too-large")
        /// A configuration value (flag or environment variable) is malformed.
        public static let invalidConfiguration = Code("invalid-configuration")
    }

    public let code: Code
    /// The `errno` of the failing call, when there was one.
    public let errno: Int32?
    public let message: String

    public init(_ code: Code, _ message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    /// `what` names the call and its object, e.g. `"open /run/stack-auth/x.env"`.
    public static func systemCall(_ what: String, errno: Int32) -> StackError {
        StackError(.systemCall, "\(what): \(StackError.describe(errno: errno))", errno: errno)
    }

    public var description: String { message }

    public static func describe(errno: Int32) -> String {
        guard let text = strerror(errno) else { return "errno \(errno)" }
        return String(cString: text)
    }
}
