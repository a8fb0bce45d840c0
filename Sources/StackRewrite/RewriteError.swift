#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import StackCore

/// The error every StackRewrite API throws: a stable `code`, the `errno` of the failing
/// system call, the path it failed on, and a one-line message saying what to do.
public struct RewriteError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A system call failed on `path`; `errno` says why.
        public static let systemCall = Code("system-call")
        /// The rule cannot be applied (for example an empty search string).
        public static let invalidRule = Code("invalid-rule")
        /// Source and destination are arranged so that a copy cannot work.
        public static let invalidTree = Code("invalid-tree")
    }

    public let code: Code
    public let errno: Int32?
    /// The file or directory the failure concerns, when there is one.
    public let path: String?
    public let message: String

    public init(_ code: Code, _ message: String, path: String? = nil, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.errno = errno
    }

    /// `operation` is a verb phrase such as "read" or "create directory".
    static func systemCall(_ operation: String, path: String, errno code: Int32) -> RewriteError {
        RewriteError(.systemCall, "\(operation) \(path): \(StackError.describe(errno: code))", path: path, errno: code)
    }

    public var description: String { message }
}
