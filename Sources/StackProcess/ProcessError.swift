import StackCore

/// The error StackProcess throws: a `code`, the `errno` when a system call failed, and
/// a one-line message naming the command.
public struct ProcessError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let executableNotFound = Code("executable-not-found")
        public static let spawnFailed = Code("spawn-failed")
        public static let timedOut = Code("timed-out")
        public static let systemCall = Code("system-call")
        public static let outputTooLarge = Code("output-too-large")
        /// Signal handling could not be set up as required (a second `SignalSource` or
        /// `Reaper`, or a `Reaper` without SIGCHLD).
        public static let signalSetup = Code("signal-setup")
        /// `Reaper.wait(for:)` was asked about a pid that is not (or no longer) our child.
        public static let notAChild = Code("not-a-child")
        /// A shutdown signal arrived while a cancellable step was running.
        public static let shutdownRequested = Code("shutdown-requested")
    }

    public let code: Code
    public let errno: Int32?
    public let message: String

    public init(_ code: Code, _ message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String {
        guard let errno else { return message }
        return "\(message): \(StackError.describe(errno: errno))"
    }
}
