import StackCore

/// The error every Supervisord API throws: a stable `code` to match on; supervisord's own
/// fault code and string when it answered with an XML-RPC fault; the `errno` when the
/// socket failed; and a one-line message saying what failed, where, and what to do.
public struct SupervisordError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The control socket cannot be reached (missing, nobody listening, no permission).
        public static let socketUnavailable = Code("socket-unavailable")
        /// The connection failed in the middle of a call (reset, closed before the reply).
        public static let connectionFailed = Code("connection-failed")
        /// A call or a wait did not finish before its deadline.
        public static let timedOut = Code("timed-out")
        /// supervisord's reply is not the HTTP/XML-RPC we expect.
        public static let invalidResponse = Code("invalid-response")
        /// supervisord answered with an XML-RPC fault: see `faultCode` and `faultString`.
        public static let fault = Code("fault")
        /// A request cannot be sent as given (e.g. a value XML cannot carry, a bad socket path).
        public static let invalidRequest = Code("invalid-request")
        /// A program reached a state from which supervisord will not start it by itself (FATAL).
        public static let programFailed = Code("program-failed")
    }

    /// supervisord's fault codes (`supervisor.xmlrpc.Faults`).
    public struct FaultCode: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: Int
        public init(_ rawValue: Int) { self.rawValue = rawValue }
        public var description: String { String(rawValue) }

        public static let unknownMethod = FaultCode(1)
        public static let incorrectParameters = FaultCode(2)
        public static let badArguments = FaultCode(3)
        public static let shutdownState = FaultCode(6)
        public static let badName = FaultCode(10)
        public static let noFile = FaultCode(20)
        public static let notExecutable = FaultCode(21)
        public static let failed = FaultCode(30)
        public static let abnormalTermination = FaultCode(40)
        public static let spawnError = FaultCode(50)
        public static let alreadyStarted = FaultCode(60)
        public static let notRunning = FaultCode(70)
    }

    public let code: Code
    /// supervisord's fault code, when `code == .fault`.
    public let faultCode: FaultCode?
    /// supervisord's fault string (e.g. `BAD_NAME: stack-app`), when `code == .fault`.
    public let faultString: String?
    /// The `errno` of the failing socket call, when there was one.
    public let errno: Int32?
    public let message: String

    public init(_ code: Code, _ message: String, errno: Int32? = nil, faultCode: FaultCode? = nil, faultString: String? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
        self.faultCode = faultCode
        self.faultString = faultString
    }

    /// A socket call failed: the message names the call, the socket and the errno.
    static func socket(_ code: Code, _ what: String, errno: Int32, hint: String = "") -> SupervisordError {
        let suffix = hint.isEmpty ? "" : "; \(hint)"
        return SupervisordError(code, "\(what): \(StackError.describe(errno: errno))\(suffix)", errno: errno)
    }

    public var description: String { message }
}
