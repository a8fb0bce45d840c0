#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Joinable OS threads for blocking file work (never the cooperative pool).
enum WorkerThread {
    final class Handle: @unchecked Sendable {
        #if canImport(Glibc)
        fileprivate var thread = pthread_t()
        #else
        fileprivate var thread: pthread_t?
        #endif
    }

    private final class Box: @unchecked Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    static func start(_ body: @escaping @Sendable () -> Void) -> Handle {
        let handle = Handle()
        let context = Unmanaged.passRetained(Box(body)).toOpaque()
        let rc = pthread_create(&handle.thread, nil, { raw in
            #if canImport(Glibc)
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            #else
            let box = Unmanaged<Box>.fromOpaque(raw).takeRetainedValue()
            #endif
            box.body()
            return nil
        }, context)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        return handle
    }

    static func join(_ handle: Handle) {
        #if canImport(Glibc)
        pthread_join(handle.thread, nil)
        #else
        if let thread = handle.thread { pthread_join(thread, nil) }
        #endif
    }

    static func detach(_ handle: Handle) {
        #if canImport(Glibc)
        pthread_detach(handle.thread)
        #else
        if let thread = handle.thread { pthread_detach(thread) }
        #endif
    }

    /// Runs `body` on a fresh thread and resumes the awaiting task with its result, so a
    /// long blocking pass never occupies a cooperative-pool thread.
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            detach(start { continuation.resume(with: Result { try body() }) })
        }
    }
}
