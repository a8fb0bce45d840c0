#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A bounded queue between the thread that walks the tree and the worker threads.
///
/// Bounded so the walk never runs far ahead (each queued job keeps its directory's
/// descriptors open). The first failure cancels everything: producers and consumers
/// see it at their next push or pop.
final class WorkQueue<Job: Sendable>: @unchecked Sendable {
    // Everything below is guarded by `lock`.
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let notEmpty = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let notFull = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var ring: [Job?]
    private var head = 0
    private var count = 0
    private var closed = false
    private var failure: (any Error)?

    init(capacity: Int) {
        ring = Array(repeating: nil, count: max(1, capacity))
        pthread_mutex_init(lock, nil)
        pthread_cond_init(notEmpty, nil)
        pthread_cond_init(notFull, nil)
    }

    deinit {
        pthread_cond_destroy(notFull)
        pthread_cond_destroy(notEmpty)
        pthread_mutex_destroy(lock)
        notFull.deallocate()
        notEmpty.deallocate()
        lock.deallocate()
    }

    /// Waits for room; false once the work has failed (stop producing).
    func push(_ job: Job) -> Bool {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        while count == ring.count && failure == nil { pthread_cond_wait(notFull, lock) }
        if failure != nil { return false }
        ring[(head + count) % ring.count] = job
        count += 1
        pthread_cond_signal(notEmpty)
        return true
    }

    /// The next job; nil when the queue is closed and drained, or the work failed.
    func pop() -> Job? {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        while count == 0 && !closed && failure == nil { pthread_cond_wait(notEmpty, lock) }
        if failure != nil || count == 0 { return nil }
        let job = ring[head]
        ring[head] = nil
        head = (head + 1) % ring.count
        count -= 1
        pthread_cond_signal(notFull)
        return job
    }

    /// No more jobs will come.
    func close() {
        pthread_mutex_lock(lock)
        closed = true
        pthread_cond_broadcast(notEmpty)
        pthread_mutex_unlock(lock)
    }

    /// Records the first failure, drops queued jobs and wakes everyone.
    func fail(_ error: any Error) {
        pthread_mutex_lock(lock)
        if failure == nil { failure = error }
        for index in ring.indices { ring[index] = nil }
        count = 0
        pthread_cond_broadcast(notEmpty)
        pthread_cond_broadcast(notFull)
        pthread_mutex_unlock(lock)
    }

    var firstFailure: (any Error)? {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return failure
    }
}

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
