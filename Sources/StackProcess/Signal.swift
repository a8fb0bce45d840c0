#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A signal number with a readable name for logs (`SIGTERM`, not `15`).
public struct Signal: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32

    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    public static let terminate = Signal(SIGTERM)
    public static let interrupt = Signal(SIGINT)
    public static let hangup = Signal(SIGHUP)
    public static let quit = Signal(SIGQUIT)
    public static let kill = Signal(SIGKILL)
    public static let childExited = Signal(SIGCHLD)

    /// The signals a supervisor treats as "stop": each one kills a process that has no
    /// handler for it, which is what a shell-script entrypoint would have done.
    public static let shutdownRequests: Set<Signal> = [.terminate, .interrupt, .hangup, .quit]

    public var description: String {
        switch rawValue {
        case SIGTERM: "SIGTERM"
        case SIGINT: "SIGINT"
        case SIGHUP: "SIGHUP"
        case SIGQUIT: "SIGQUIT"
        case SIGKILL: "SIGKILL"
        case SIGCHLD: "SIGCHLD"
        case SIGPIPE: "SIGPIPE"
        case SIGUSR1: "SIGUSR1"
        case SIGUSR2: "SIGUSR2"
        default: "signal \(rawValue)"
        }
    }
}
