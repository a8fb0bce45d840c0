#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `guest-exec-status`'s result, with the captured output decoded from base64.
public struct GuestExecStatus: Sendable, Equatable {
    public let exited: Bool
    public let exitCode: Int32?
    public let signal: Int32?
    public let standardOutput: [UInt8]
    public let standardError: [UInt8]
    /// The agent keeps at most 16 MiB per stream; beyond that these are true.
    public let standardOutputTruncated: Bool
    public let standardErrorTruncated: Bool
}

extension GuestExecStatus: Decodable {
    private enum CodingKeys: String, CodingKey {
        case exited, signal
        case exitCode = "exitcode"
        case outData = "out-data"
        case errData = "err-data"
        case outTruncated = "out-truncated"
        case errTruncated = "err-truncated"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        exited = try container.decode(Bool.self, forKey: .exited)
        exitCode = try container.decodeIfPresent(Int32.self, forKey: .exitCode)
        signal = try container.decodeIfPresent(Int32.self, forKey: .signal)
        standardOutput = try GuestExecStatus.base64(container, .outData)
        standardError = try GuestExecStatus.base64(container, .errData)
        standardOutputTruncated = try container.decodeIfPresent(Bool.self, forKey: .outTruncated) ?? false
        standardErrorTruncated = try container.decodeIfPresent(Bool.self, forKey: .errTruncated) ?? false
    }

    private static func base64(_ container: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys) throws -> [UInt8] {
        guard let text = try container.decodeIfPresent(String.self, forKey: key) else { return [] }
        guard let data = Data(base64Encoded: text) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: container, debugDescription: "\(key.stringValue) is not base64")
        }
        return Array(data)
    }
}

/// How a guest process ended, and what it printed.
public struct GuestExecResult: Sendable, Equatable {
    public enum Termination: Sendable, Equatable, CustomStringConvertible {
        case exited(code: Int32)
        case signaled(signal: Int32)
        /// The agent reported the process exited but gave neither an exit code nor a
        /// signal. Not a success: only an explicit exit code 0 is.
        case unknown

        public var description: String {
            switch self {
            case .exited(let code): "exit code \(code)"
            case .signaled(let signal): "killed by signal \(signal)"
            case .unknown: "no exit code reported"
            }
        }
    }

    public let pid: Int64
    public let termination: Termination
    public let standardOutput: [UInt8]
    public let standardError: [UInt8]
    public let standardOutputTruncated: Bool
    public let standardErrorTruncated: Bool

    init(pid: Int64, status: GuestExecStatus) {
        self.pid = pid
        if let code = status.exitCode {
            termination = .exited(code: code)
        } else if let signal = status.signal {
            termination = .signaled(signal: signal)
        } else {
            termination = .unknown
        }
        standardOutput = status.standardOutput
        standardError = status.standardError
        standardOutputTruncated = status.standardOutputTruncated
        standardErrorTruncated = status.standardErrorTruncated
    }

    /// True only for an explicit exit code 0.
    public var isSuccess: Bool { termination == .exited(code: 0) }

    public var standardOutputText: String { String(decoding: standardOutput, as: UTF8.self) }
    public var standardErrorText: String { String(decoding: standardError, as: UTF8.self) }

    /// Throws `guestProcessFailed` (naming `what`, how it ended and the end of its
    /// stderr) unless the process exited with code 0.
    @discardableResult
    public func requireSuccess(_ what: String) throws(QEMUControlError) -> GuestExecResult {
        guard !isSuccess else { return self }
        var message = "\(what) failed in the guest (\(termination))"
        let tail = standardErrorText.split(separator: "\n").suffix(3).joined(separator: " | ")
        if !tail.isEmpty { message += ": \(tail)" }
        throw QEMUControlError(.guestProcessFailed, message, command: "guest-exec")
    }
}
