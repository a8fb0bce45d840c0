import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs a blocking system call (waitpid, read on a pipe, accept) on its own OS thread
/// and resumes the awaiting task with the result, so the cooperative pool is never
/// blocked by it. Its threads block SIGPIPE: a write to a closed pipe or socket fails
/// with EPIPE instead of killing the process.
public enum BlockingCall {
    public static func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
            detach { continuation.resume(returning: body()) }
        }
    }

    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            detach { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Blocks SIGPIPE for the calling thread only: a write to a closed pipe then fails
    /// with EPIPE instead of killing the process. For dedicated threads (the pending,
    /// thread-directed signal is discarded when the thread ends).
    public static func blockBrokenPipeOnThisThread() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Starts a detached thread running `body` with SIGPIPE blocked (see above).
    public static func detach(_ body: @escaping @Sendable () -> Void) {
        // Small stacks: these threads only sit in one system call.
        OSThread.detached(stackSize: 256 * 1024) {
            // A blocking write to a peer that went away must fail with EPIPE, not kill
            // the process: these threads never take SIGPIPE.
            BlockingCall.blockBrokenPipeOnThisThread()
            body()
        }
    }
}
