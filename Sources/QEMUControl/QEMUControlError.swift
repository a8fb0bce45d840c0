import StackCore

/// The error every QEMUControl API throws: a stable `code`, the `errno` when a system
/// call failed, QEMU's own error `class`/`desc` when QEMU or the guest agent refused a
/// command, and a one-line message saying what failed, where, and what to do.
public struct QEMUControlError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The socket could not be opened (missing, refused, path too long).
        public static let connectionFailed = Code("connection-failed")
        /// The peer closed the connection (QEMU exited, agent went away) or `close()` was called.
        public static let connectionClosed = Code("connection-closed")
        /// No answer before the deadline.
        public static let timedOut = Code("timed-out")
        /// QEMU or the guest agent answered with an error (`qemuClass`/`qemuDescription`).
        public static let commandFailed = Code("command-failed")
        /// The peer sent something that is not the protocol (bad greeting, malformed reply,
        /// a message over the size limit).
        public static let protocolViolation = Code("protocol-violation")
        /// A guest process ended unsuccessfully (non-zero exit, signal, or no exit code).
        public static let guestProcessFailed = Code("guest-process-failed")
        /// A caller-supplied value cannot be sent (e.g. more descriptors than one message carries).
        public static let invalidArgument = Code("invalid-argument")
    }

    public let code: Code
    public let message: String
    /// The `errno` of the failing system call, when there was one.
    public let errno: Int32?
    /// QEMU's error class (`GenericError`, `CommandNotFound`, `DeviceNotFound`, …).
    public let qemuClass: String?
    /// QEMU's human-readable error description.
    public let qemuDescription: String?
    /// The QMP/QGA command involved, when there was one.
    public let command: String?

    public init(_ code: Code, _ message: String, errno: Int32? = nil, command: String? = nil,
                qemuClass: String? = nil, qemuDescription: String? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
        self.command = command
        self.qemuClass = qemuClass
        self.qemuDescription = qemuDescription
    }

    public static func systemCall(_ what: String, errno: Int32, code: Code = .connectionFailed) -> QEMUControlError {
        QEMUControlError(code, "\(what): \(StackError.describe(errno: errno))", errno: errno)
    }

    /// QEMU (or the agent) rejected `command`.
    static func commandFailed(_ command: String, peer: String, qemuClass: String, description: String) -> QEMUControlError {
        QEMUControlError(.commandFailed, "\(peer) rejected \(command): \(qemuClass): \(description)",
                         command: command, qemuClass: qemuClass, qemuDescription: description)
    }

    public var description: String { message }
}
