import CSystem

/// How a child process ended.
public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    /// Decodes a `waitpid` status word.
    public init(waitStatus status: Int32) {
        if cs_wifsignaled(status) {
            self = .signaled(cs_wtermsig(status))
        } else {
            self = .exited(cs_wexitstatus(status))
        }
    }

    public var isSuccess: Bool { self == .exited(0) }

    /// The code a shell would report: the exit code, or 128 + signal number.
    public var shellCode: Int32 {
        switch self {
        case .exited(let code): code
        case .signaled(let signal): 128 + signal
        }
    }

    public var description: String {
        switch self {
        case .exited(let code): "exit code \(code)"
        case .signaled(let signal): "signal \(signal)"
        }
    }
}
