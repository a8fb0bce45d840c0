#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where decoded bytes go: the decoder fills `currentBuffer` and hands it over with
/// `commit`; two strategies below.
protocol DecodedOutput {
    var currentBuffer: UnsafeMutableRawBufferPointer { get }
    /// The current buffer holds `count` bytes to write; afterwards `currentBuffer` is empty.
    mutating func commit(_ count: Int) throws
    /// Everything committed is written; the sink is finished.
    mutating func finish() throws
    /// Stop after an error (pending data may be dropped); never throws.
    mutating func abandon()
}

/// One buffer, written synchronously (in-memory output, where a thread would only cost).
struct DirectOutput<Sink: ByteSink>: DecodedOutput {
    var sink: Sink
    let currentBuffer: UnsafeMutableRawBufferPointer

    init(sink: Sink, bufferSize: Int) {
        self.sink = sink
        currentBuffer = .allocate(byteCount: bufferSize, alignment: 4096)
    }

    mutating func commit(_ count: Int) throws {
        try sink.write(UnsafeRawBufferPointer(rebasing: currentBuffer[0..<count]))
    }

    mutating func finish() throws {
        try sink.finish()
        currentBuffer.deallocate()
    }

    mutating func abandon() { currentBuffer.deallocate() }
}

/// Decoding and writing overlap, as with the zstd CLI's asynchronous output: the
/// decoder fills one buffer while a writer thread writes the previous ones. The sink
/// is used only by the writer thread until `finish`/`abandon` have joined it.
///
/// A blocked write (a pipe reader that stopped reading) delays `finish`/`abandon` as
/// long as it would block a synchronous writer; the idle timeout bounds both.
final class WriteBehind<Sink: ByteSink & Sendable>: DecodedOutput, @unchecked Sendable {
    private(set) var sink: Sink
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let buffers: [UnsafeMutableRawBufferPointer]
    // Guarded by `lock`:
    private var empty: [UnsafeMutableRawBufferPointer]
    private var queued: [(buffer: UnsafeMutableRawBufferPointer, count: Int)] = []
    private var noMoreInput = false
    private var dropQueued = false
    private var writerFailure: (any Error)?
    // Producer-side state:
    private(set) var currentBuffer: UnsafeMutableRawBufferPointer
    private var thread: JoinableThread?

    init(sink: Sink, bufferSize: Int, bufferCount: Int = 3) throws {
        self.sink = sink
        buffers = (0..<bufferCount).map { _ in .allocate(byteCount: bufferSize, alignment: 4096) }
        currentBuffer = buffers[0]
        empty = Array(buffers.dropFirst())
        pthread_mutex_init(lock, nil)
        pthread_cond_init(changed, nil)
        thread = try JoinableThread.start { [self] in self.writeQueued() }
    }

    deinit {
        precondition(thread == nil, "WriteBehind released without finish() or abandon()")
        buffers.forEach { $0.deallocate() }
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(lock)
        lock.deallocate()
        changed.deallocate()
    }

    func commit(_ count: Int) throws {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        queued.append((currentBuffer, count))
        pthread_cond_broadcast(changed)
        while empty.isEmpty && writerFailure == nil { pthread_cond_wait(changed, lock) }
        if let writerFailure { throw writerFailure }
        currentBuffer = empty.removeLast()
    }

    func finish() throws {
        stopWriter(dropQueued: false)
        if let writerFailure { throw writerFailure }
        try sink.finish()
    }

    func abandon() {
        stopWriter(dropQueued: true)
    }

    private func stopWriter(dropQueued: Bool) {
        guard let thread else { return }
        pthread_mutex_lock(lock)
        noMoreInput = true
        self.dropQueued = dropQueued
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(lock)
        thread.join()
        self.thread = nil
    }

    /// The writer thread: write queued buffers in order until told to stop.
    private func writeQueued() {
        pthread_mutex_lock(lock)
        while true {
            while queued.isEmpty && !noMoreInput { pthread_cond_wait(changed, lock) }
            if queued.isEmpty || dropQueued || writerFailure != nil { break }
            let (buffer, count) = queued.removeFirst()
            pthread_mutex_unlock(lock)
            var failure: (any Error)?
            do {
                try sink.write(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            } catch {
                failure = error
            }
            pthread_mutex_lock(lock)
            if let failure { writerFailure = failure }
            empty.append(buffer)
            pthread_cond_broadcast(changed)
        }
        pthread_mutex_unlock(lock)
    }
}

/// A pthread that is joined (never detached), so no work outlives the call that started it.
struct JoinableThread: Sendable {
    private let handle: pthread_t

    static func start(_ body: @escaping @Sendable () -> Void) throws -> JoinableThread {
        final class Box: @unchecked Sendable {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        let context = Unmanaged.passRetained(Box(body)).toOpaque()
        #if canImport(Glibc)
        var handle = pthread_t()
        #else
        var handle: pthread_t?
        #endif
        let rc = pthread_create(&handle, nil, { raw in
            #if canImport(Glibc)
            Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
            #else
            Unmanaged<Box>.fromOpaque(raw).takeRetainedValue().body()
            #endif
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Box>.fromOpaque(context).release()
            throw ZstdError.systemCall("start the output writer thread", errno: rc)
        }
        #if canImport(Glibc)
        return JoinableThread(handle: handle)
        #else
        return JoinableThread(handle: handle!)
        #endif
    }

    func join() {
        pthread_join(handle, nil)
    }
}
