import CSystem
import Logging
import StackCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The transport under both clients: one unix-socket connection, one I/O thread.
///
/// The I/O thread sleeps in `poll` on the socket and a wake pipe. It reads and frames
/// bytes, decodes messages (off the cooperative pool), hands each to the first waiting
/// *slot* whose predicate accepts it, keeps unclaimed ones the protocol wants to keep
/// (QMP events) in a bounded backlog, expires slots whose deadline passed (its poll
/// timeout is the earliest deadline, so nothing is polled on a timer), and writes
/// whatever could not be written inline. When the socket closes, every waiting slot
/// fails at once.
///
/// A caller registers a slot *before* sending its request, then waits on it, so a reply
/// can never arrive unobserved. Writes happen inline (non-blocking) when nothing is
/// queued; the rest is queued whole and written in order by the I/O thread, so two
/// requests never interleave on the wire and a timed-out caller never leaves half a
/// message behind.
final class MessageChannel<Message: Sendable>: Sendable {
    typealias Decode = @Sendable (FramedItem, UInt64) -> Message?
    typealias Match = @Sendable (Message) -> Bool

    struct Configuration: Sendable {
        /// Names the peer in errors and logs, e.g. `QMP /run/vm/monitor.sock`.
        var label: String
        var maximumMessageSize: Int
        var recognizesDelimiter: Bool
        /// Unclaimed messages kept for later waiters (oldest dropped beyond this).
        var backlogLimit: Int
        var logger: Logger
    }

    private struct Slot {
        let id: UInt64
        let purpose: String
        let deadline: ContinuousClock.Instant
        let match: Match
        var continuation: CheckedContinuation<Message, any Error>?
        var result: Result<Message, QEMUControlError>?
    }

    private struct Outgoing {
        var bytes: [UInt8]
        var offset: Int
        /// Duplicates owned by the queue (the caller may close its own copies), sent
        /// with the first byte of `bytes`.
        var descriptors: [Int32]
    }

    private struct State {
        var slots: [Slot] = []
        var nextSlotID: UInt64 = 1
        var backlog: [Message] = []
        /// Messages no slot took (kept or dropped).
        var unclaimedCount = 0
        var outgoing: [Outgoing] = []
        var closedError: QEMUControlError?
        var closeRequested = false
        /// The deadline the I/O thread's poll currently sleeps until (nil: no timeout).
        var armedDeadline: ContinuousClock.Instant?
    }

    let configuration: Configuration
    private let socket: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let retainUnclaimed: Match
    private let decode: Decode
    private let state = Mutex(State())
    /// Sequence number of the last item framed by the I/O thread (see `cursor`).
    private let framedCount = Atomic<UInt64>(0)

    /// Takes ownership of `socket` (non-blocking) and starts the I/O thread.
    init(socket: Int32, configuration: Configuration, decode: @escaping Decode, retainUnclaimed: @escaping Match) throws {
        var pipeFDs: [Int32] = [-1, -1]
        let rc = pipeFDs.withUnsafeMutableBufferPointer { cs_pipe($0.baseAddress!) }
        if rc < 0 {
            systemClose(socket)
            throw QEMUControlError.systemCall("pipe for \(configuration.label)", errno: -rc)
        }
        for fd in pipeFDs { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        self.socket = socket
        self.wakeRead = pipeFDs[0]
        self.wakeWrite = pipeFDs[1]
        self.configuration = configuration
        self.decode = decode
        self.retainUnclaimed = retainUnclaimed
        // The loop's buffers are on the heap: a small stack is enough.
        OSThread.detached(stackSize: 512 * 1024) { [self] in self.runIOLoop() }
    }

    // MARK: waiting for messages

    /// Reserves the first message (in arrival order) that `match` accepts and that no
    /// earlier slot took. With `searchBacklog`, an already retained message may satisfy
    /// it at once. Throws when the connection is closed.
    func register(purpose: String, deadline: ContinuousClock.Instant, searchBacklog: Bool = false,
                  match: @escaping Match) throws(QEMUControlError) -> UInt64 {
        try state.withLock { (s: inout State) throws(QEMUControlError) -> UInt64 in
            let id = s.nextSlotID
            s.nextSlotID += 1
            if searchBacklog, let index = s.backlog.firstIndex(where: match) {
                let message = s.backlog.remove(at: index)
                s.slots.append(Slot(id: id, purpose: purpose, deadline: deadline, match: match, result: .success(message)))
                return id
            }
            if let error = s.closedError { throw error }
            s.slots.append(Slot(id: id, purpose: purpose, deadline: deadline, match: match))
            if let armed = s.armedDeadline, deadline >= armed {
                // The I/O thread wakes by then anyway and re-arms for this slot.
            } else {
                wakeLocked(s)
            }
            return id
        }
    }

    /// Waits for the message reserved by `register`. Cancelling the task abandons the
    /// slot (a late message then goes to the next matching slot or the backlog).
    func wait(_ id: UInt64) async throws -> Message {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Message, any Error>) in
                let ready: Result<Message, any Error>? = state.withLock { s in
                    guard let index = s.slots.firstIndex(where: { $0.id == id }) else {
                        return .failure(CancellationError())
                    }
                    if let result = s.slots[index].result {
                        s.slots.remove(at: index)
                        return result.mapError { $0 }
                    }
                    s.slots[index].continuation = continuation
                    return nil
                }
                if let ready { continuation.resume(with: ready) }
            }
        } onCancel: {
            abandon(id)
        }
    }

    /// Drops a slot (after a failed send, or on cancellation). A message it had already
    /// taken goes back to the backlog if the protocol keeps such messages (an event).
    func abandon(_ id: UInt64) {
        let continuation = state.withLock { s -> CheckedContinuation<Message, any Error>? in
            guard let index = s.slots.firstIndex(where: { $0.id == id }) else { return nil }
            let slot = s.slots.remove(at: index)
            if case .success(let message)? = slot.result, retainUnclaimed(message) {
                s.backlog.insert(message, at: 0)
            }
            return slot.continuation
        }
        continuation?.resume(throwing: CancellationError())
    }

    /// Removes and returns the retained messages `match` accepts.
    func takeFromBacklog(where match: Match) -> [Message] {
        state.withLock { s in
            var taken: [Message] = []
            s.backlog.removeAll { message in
                guard match(message) else { return false }
                taken.append(message)
                return true
            }
            return taken
        }
    }

    /// Sequence number of the last message framed so far: messages with a higher number
    /// were received after this call.
    var cursor: UInt64 { framedCount.load(ordering: .acquiring) }

    var closedError: QEMUControlError? { state.withLock { $0.closedError } }

    var unclaimedCount: Int { state.withLock { $0.unclaimedCount } }

    /// Slots still waiting for a message (tests use it to know calls are in flight).
    var waitingCount: Int { state.withLock { s in s.slots.count { $0.result == nil } } }

    // MARK: sending

    /// Queues `bytes` (one or more complete messages) for sending, with `descriptors`
    /// attached via SCM_RIGHTS. Returns once the bytes are written or queued; the reply's
    /// deadline covers the rest. The caller keeps ownership of its descriptors.
    func send(_ bytes: [UInt8], descriptors: [Int32] = []) throws(QEMUControlError) {
        guard descriptors.count <= 16 else {
            throw QEMUControlError(.invalidArgument, "at most 16 descriptors can travel with one message (got \(descriptors.count))")
        }
        try state.withLock { (s: inout State) throws(QEMUControlError) in
            if let error = s.closedError { throw error }
            if s.closeRequested { throw closedByClient() }
            var item = Outgoing(bytes: bytes, offset: 0, descriptors: [])
            if s.outgoing.isEmpty {
                switch writeSome(&item, descriptors: descriptors) {
                case .failure(let error):
                    // The I/O thread sees the broken socket too and fails every slot.
                    throw error
                case .success where item.offset == item.bytes.count:
                    return
                case .success where item.offset > 0:
                    s.outgoing.append(item)
                    wakeLocked(s)
                    return
                case .success:
                    break
                }
            }
            item.descriptors = try duplicate(descriptors)
            s.outgoing.append(item)
            wakeLocked(s)
        }
    }

    /// Closes the connection: pending and future waits fail with `connectionClosed`.
    func close() {
        state.withLock { s in
            guard s.closedError == nil, !s.closeRequested else { return }
            s.closeRequested = true
            // Lets the peer see the end at once (the agent's chardev is single-client).
            _ = shutdown(socket, Int32(SHUT_RDWR))
            wakeLocked(s)
        }
    }

    // MARK: I/O thread

    private func closedByClient() -> QEMUControlError {
        QEMUControlError(.connectionClosed, "\(configuration.label): the connection was closed by this process")
    }

    private func wakeLocked(_ s: State) {
        guard s.closedError == nil else { return }
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    private func duplicate(_ descriptors: [Int32]) throws(QEMUControlError) -> [Int32] {
        var copies: [Int32] = []
        for fd in descriptors {
            let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
            if copy < 0 {
                let code = errno
                copies.forEach { systemClose($0) }
                throw QEMUControlError.systemCall("dup descriptor \(fd) for \(configuration.label)", errno: code, code: .invalidArgument)
            }
            copies.append(copy)
        }
        return copies
    }

    /// One non-blocking write attempt. Advances `item.offset`; EAGAIN is not an error.
    private func writeSome(_ item: inout Outgoing, descriptors: [Int32]) -> Result<Void, QEMUControlError> {
        while item.offset < item.bytes.count {
            let attach = item.offset == 0 ? descriptors : []
            let n: Int = item.bytes.withUnsafeBytes { raw in
                attach.withUnsafeBufferPointer { fds in
                    cs_send_with_fds(socket, raw.baseAddress! + item.offset, raw.count - item.offset,
                                     fds.baseAddress, Int32(fds.count))
                }
            }
            if n == -Int(EAGAIN) || n == -Int(EWOULDBLOCK) { return .success(()) }
            if n < 0 {
                return .failure(QEMUControlError(.connectionClosed,
                    "\(configuration.label): sending failed (\(StackErrorText.of(Int32(-n)))); the peer has gone away",
                    errno: Int32(-n)))
            }
            item.offset += n
        }
        return .success(())
    }

    private enum Wake { case resume(CheckedContinuation<Message, any Error>, Result<Message, QEMUControlError>) }

    private func runIOLoop() {
        var framer = LineFramer(maximumMessageSize: configuration.maximumMessageSize,
                                recognizesDelimiter: configuration.recognizesDelimiter)
        let chunkSize = 256 * 1024
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
        defer { chunk.deallocate() }
        var sequence: UInt64 = 0
        var ending: QEMUControlError?

        while ending == nil {
            let (timeout, wantsWrite) = state.withLock { s -> (Int32, Bool) in
                // Never sleep past the horizon: then a slot whose deadline lies beyond
                // it needs no wake-up when registered (the common case: one write and
                // one context switch saved per call), and is still expired on time.
                let horizon = ContinuousClock.now + MessageChannel.idleHorizon
                let deadline = min(s.slots.lazy.filter { $0.result == nil }.map(\.deadline).min() ?? horizon, horizon)
                s.armedDeadline = deadline
                return (MessageChannel.pollTimeout(until: deadline), !s.outgoing.isEmpty)
            }
            var fds = [
                pollfd(fd: socket, events: Int16(POLLIN) | (wantsWrite ? Int16(POLLOUT) : 0), revents: 0),
                pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&fds, 2, timeout)
            if ready < 0 && errno != EINTR {
                ending = .systemCall("poll on \(configuration.label)", errno: errno, code: .connectionClosed)
                break
            }
            if fds[1].revents != 0 {
                var drain = [UInt8](repeating: 0, count: 64)
                while read(wakeRead, &drain, drain.count) > 0 {}
            }
            if state.withLock({ $0.closeRequested }) {
                ending = closedByClient()
                break
            }
            if fds[0].revents & Int16(POLLOUT) != 0, let failure = flushOutgoing() {
                ending = failure
                break
            }
            var messages: [Message] = []
            if fds[0].revents & (Int16(POLLIN) | Int16(POLLHUP) | Int16(POLLERR)) != 0 {
                readLoop: while true {
                    let n = read(socket, chunk.baseAddress, chunkSize)
                    if n > 0 {
                        framer.append(UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
                        do {
                            while let item = try framer.next() {
                                sequence += 1
                                framedCount.store(sequence, ordering: .releasing)
                                if let message = decode(item, sequence) { messages.append(message) }
                            }
                        } catch {
                            ending = error
                            break readLoop
                        }
                        continue
                    }
                    if n == 0 {
                        ending = QEMUControlError(.connectionClosed,
                            "\(configuration.label): the peer closed the connection (QEMU or the agent exited or dropped the client)")
                        break
                    }
                    if errno == EINTR { continue }
                    if errno == EAGAIN || errno == EWOULDBLOCK { break }
                    ending = .systemCall("read from \(configuration.label)", errno: errno, code: .connectionClosed)
                    break
                }
            }
            let wakes = state.withLock { s in
                var wakes = dispatch(messages, into: &s)
                expire(now: .now, in: &s, collecting: &wakes)
                return wakes
            }
            resume(wakes)
        }

        let failure = ending!
        let wakes = state.withLock { s -> [Wake] in
            s.closedError = failure
            var wakes: [Wake] = []
            var kept: [Slot] = []
            for var slot in s.slots {
                if slot.result != nil { kept.append(slot); continue }
                if let continuation = slot.continuation {
                    wakes.append(.resume(continuation, .failure(failure)))
                } else {
                    slot.result = .failure(failure)
                    kept.append(slot)
                }
            }
            s.slots = kept
            for item in s.outgoing { item.descriptors.forEach { systemClose($0) } }
            s.outgoing.removeAll()
            // Closed under the lock so an inline `send` can never write to a reused number.
            systemClose(socket)
            systemClose(wakeRead)
            systemClose(wakeWrite)
            return wakes
        }
        if failure.code == .connectionClosed {
            configuration.logger.debug("\(failure.message)")
        } else {
            configuration.logger.warning("\(failure.message)")
        }
        resume(wakes)
    }

    private func resume(_ wakes: [Wake]) {
        for wake in wakes {
            switch wake {
            case .resume(let continuation, let result): continuation.resume(with: result.mapError { $0 })
            }
        }
    }

    private func dispatch(_ messages: [Message], into s: inout State) -> [Wake] {
        var wakes: [Wake] = []
        for message in messages {
            if let index = s.slots.firstIndex(where: { $0.result == nil && $0.match(message) }) {
                if let continuation = s.slots[index].continuation {
                    s.slots.remove(at: index)
                    wakes.append(.resume(continuation, .success(message)))
                } else {
                    s.slots[index].result = .success(message)
                }
            } else {
                s.unclaimedCount += 1
                guard retainUnclaimed(message) else { continue }
                s.backlog.append(message)
                if s.backlog.count > configuration.backlogLimit {
                    s.backlog.removeFirst(s.backlog.count - configuration.backlogLimit)
                }
            }
        }
        return wakes
    }

    private func expire(now: ContinuousClock.Instant, in s: inout State, collecting wakes: inout [Wake]) {
        var index = 0
        while index < s.slots.count {
            let slot = s.slots[index]
            guard slot.result == nil, slot.deadline <= now else { index += 1; continue }
            let error = QEMUControlError(.timedOut, "\(configuration.label): no \(slot.purpose) before the deadline")
            if let continuation = slot.continuation {
                s.slots.remove(at: index)
                wakes.append(.resume(continuation, .failure(error)))
            } else {
                s.slots[index].result = .failure(error)
                index += 1
            }
        }
    }

    /// Writes queued items until the socket would block. Returns an error when the
    /// socket broke.
    private func flushOutgoing() -> QEMUControlError? {
        state.withLock { s -> QEMUControlError? in
            while !s.outgoing.isEmpty {
                var item = s.outgoing[0]
                let attach = item.offset == 0 ? item.descriptors : []
                if case .failure(let error) = writeSome(&item, descriptors: attach) { return error }
                if item.offset > 0 && !item.descriptors.isEmpty {
                    item.descriptors.forEach { systemClose($0) }
                    item.descriptors = []
                }
                if item.offset < item.bytes.count {
                    s.outgoing[0] = item
                    return nil
                }
                s.outgoing.removeFirst()
            }
            return nil
        }
    }

    /// Longest sleep of the I/O thread (see `runIOLoop`).
    static var idleHorizon: Duration { .seconds(1) }

    /// Milliseconds until `deadline`, rounded up (so a wake-up is never early), -1 for none.
    static func pollTimeout(until deadline: ContinuousClock.Instant?) -> Int32 {
        guard let deadline else { return -1 }
        let remaining = ContinuousClock.now.duration(to: deadline)
        if remaining <= .zero { return 0 }
        let (seconds, attoseconds) = remaining.components
        let milliseconds = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: milliseconds)
    }
}

@inline(__always) private func systemClose(_ fd: Int32) {
    _ = close(fd)
}
