import StackCore

/// The error every GuestTrigger API throws: a stable `code`, the `errno` when a system
/// call failed, and a one-line message (never a secret value).
public struct TriggerError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// stdin is too large, not the strict four-line format, or a value is invalid.
        public static let invalidInput = Code("invalid-input")
        /// A flag or variable of the configuration is malformed.
        public static let invalidConfiguration = Code("invalid-configuration")
        /// The container runtime could not be started.
        public static let runtimeFailed = Code("runtime-failed")
    }

    public let code: Code
    public let errno: Int32?
    public let message: String

    public init(_ code: Code, _ message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String { message }
}
