import StackCore

/// Long blocking passes (tree copies, rewrites) run on their own OS thread, never on a
/// cooperative-pool thread.
enum WorkerThread {
    /// Runs `body` on a fresh thread and resumes the awaiting task with its result.
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            OSThread.detached { continuation.resume(with: Result { try body() }) }
        }
    }
}
