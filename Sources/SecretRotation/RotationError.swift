import StackCore

/// The error every SecretRotation API throws: a stable `code`, the `errno` when a system
/// call failed, and a one-line message saying what failed, where, and what to do.
/// Messages never contain a secret value (values are `Secret`s, which print `<redacted>`).
public struct RotationError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The four fresh secrets are missing, malformed or placeholders.
        public static let invalidInput = Code("invalid-input")
        /// A flag or variable of the configuration is malformed.
        public static let invalidConfiguration = Code("invalid-configuration")
        /// The journal or the existing rotated-secrets.env cannot be read as written.
        public static let corruptState = Code("corrupt-state")
        /// Another rotate-secrets holds the lock and did not finish in time.
        public static let locked = Code("locked")
        /// Writing the env file or the journal failed.
        public static let stateWrite = Code("state-write")
        /// Rewriting the publishable key in the app files failed.
        public static let rewrite = Code("rewrite")
        /// Connecting to PostgreSQL, reading or updating the internal ApiKeySet failed.
        public static let database = Code("database")
        /// supervisord refused or did not complete the restart.
        public static let restart = Code("restart")
        /// The restarted servers did not listen on their ports in time.
        public static let listen = Code("listen")
    }

    public let code: Code
    public let errno: Int32?
    public let message: String

    public init(_ code: Code, _ message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    /// Wraps a lower module's error (whose message is already one secret-free line).
    init(_ code: Code, _ context: String, underlying: any Error) {
        let errno = (underlying as? StackError)?.errno
        self.init(code, "\(context): \(underlying)", errno: errno)
    }

    public var description: String { message }
}
