import CZstd
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one error the Zstd module throws: a stable `code`, the `errno` of a failed
/// system call, zstd's own error name when libzstd reported the problem, and a
/// one-line message saying what failed and what to do.
public struct ZstdError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The input is not zstd data or is damaged (bad magic, corrupt block, wrong checksum).
        public static let corruptInput = Code("corrupt-input")
        /// The input ended inside a frame, or held no frame at all.
        public static let truncatedInput = Code("truncated-input")
        /// A read, write, poll or truncate failed; `errno` says why (EPIPE: the reader went away).
        public static let systemCall = Code("system-call")
        /// Neither input nor output made progress for the configured idle timeout.
        public static let timedOut = Code("timed-out")
        /// Decompressed output exceeded the caller's limit (in-memory API).
        public static let outputLimitExceeded = Code("output-limit-exceeded")
        /// libzstd rejected a parameter or failed internally (e.g. out of memory).
        public static let library = Code("library")
    }

    public let code: Code
    /// The `errno` of the failing call, when there was one.
    public let errno: Int32?
    /// libzstd's name for the error, e.g. "Restored data doesn't match checksum".
    public let zstdErrorName: String?
    public let message: String

    public init(_ code: Code, _ message: String, errno: Int32? = nil, zstdErrorName: String? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
        self.zstdErrorName = zstdErrorName
    }

    public var description: String { message }

    static func systemCall(_ what: String, errno: Int32) -> ZstdError {
        let reason = strerror(errno).map { String(cString: $0) } ?? "errno \(errno)"
        return ZstdError(.systemCall, "\(what): \(reason)", errno: errno)
    }

    /// Wraps a libzstd result that `ZSTD_isError` flagged. Data errors become
    /// `corruptInput`; everything else (parameters, memory) is `library`.
    static func library(_ result: Int, while what: String) -> ZstdError {
        let name = String(cString: ZSTD_getErrorName(result))
        switch ZSTD_getErrorCode(result) {
        case ZSTD_error_prefix_unknown, ZSTD_error_version_unsupported, ZSTD_error_frameParameter_unsupported,
             ZSTD_error_frameParameter_windowTooLarge, ZSTD_error_corruption_detected, ZSTD_error_checksum_wrong,
             ZSTD_error_literals_headerWrong, ZSTD_error_dictionary_wrong, ZSTD_error_srcSize_wrong:
            return ZstdError(.corruptInput, "\(what): the input is not valid zstd data (\(name))", zstdErrorName: name)
        default:
            return ZstdError(.library, "\(what): libzstd failed (\(name))", zstdErrorName: name)
        }
    }
}
