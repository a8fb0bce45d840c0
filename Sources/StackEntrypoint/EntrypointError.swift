import StackCore

/// The error `stack-entrypoint` reports before exiting non-zero: one line that names
/// the step and what to fix.
public struct EntrypointError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A required variable is missing (emulator mode keys).
        public static let missingVariable = Code("missing-variable")
        /// A variable is malformed (e.g. a key that is not hex64).
        public static let invalidVariable = Code("invalid-variable")
        /// `rotated-secrets.env` is unreadable or not strict KEY=VALUE.
        public static let invalidOverlay = Code("invalid-overlay")
        /// A migration or seed command failed.
        public static let commandFailed = Code("command-failed")
        /// Copying the app tree or substituting sentinels failed.
        public static let prepareFailed = Code("prepare-failed")
        /// The internal API key set could not be written.
        public static let bootstrapFailed = Code("bootstrap-failed")
        /// A shutdown signal arrived before the servers started.
        public static let interrupted = Code("interrupted")
    }

    public let code: Code
    public let message: String
    /// The process exit code this error maps to.
    public let exitCode: Int32

    public init(_ code: Code, _ message: String, exitCode: Int32 = 1) {
        self.code = code
        self.message = message
        self.exitCode = exitCode
    }

    public var description: String { message }
}
