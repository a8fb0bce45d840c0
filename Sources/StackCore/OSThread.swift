#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A plain OS thread for work that blocks (poll loops, waitpid, file copies), so it never
/// occupies one of the cooperative pool's few threads.
public final class OSThread: @unchecked Sendable {  // `thread` is written once, before any reader
    #if canImport(Glibc)
    private var thread = pthread_t()
    #else
    private var thread: pthread_t?
    #endif

    private init() {}

    /// Starts a detached thread; it releases its resources when `body` returns.
    /// `stackSize` nil keeps the system default (8 MiB of address space).
    public static func detached(stackSize: Int? = nil, _ body: @escaping @Sendable () -> Void) {
        _ = start(detached: true, stackSize: stackSize, body)
    }

    /// Starts a thread that must be `join()`ed.
    public static func joinable(stackSize: Int? = nil, _ body: @escaping @Sendable () -> Void) -> OSThread {
        start(detached: false, stackSize: stackSize, body)
    }

    /// Waits until the thread's body has returned.
    public func join() {
        #if canImport(Glibc)
        pthread_join(thread, nil)
        #else
        if let thread { pthread_join(thread, nil) }
        #endif
    }

    private final class Body: @unchecked Sendable {  // immutable, handed to exactly one thread
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    private static func start(detached: Bool, stackSize: Int?, _ body: @escaping @Sendable () -> Void) -> OSThread {
        let handle = OSThread()
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        if detached { pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED)) }
        if let stackSize { pthread_attr_setstacksize(&attributes, stackSize) }
        let rc = pthread_create(&handle.thread, &attributes, { raw in
            #if canImport(Glibc)
            Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue().run()
            #else
            Unmanaged<Body>.fromOpaque(raw).takeRetainedValue().run()
            #endif
            return nil
        }, context)
        // Only resource exhaustion makes this fail; nothing sensible can continue then.
        precondition(rc == 0, "pthread_create failed: \(StackError.describe(errno: rc))")
        return handle
    }
}
