import StackCore
import StackProcess
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Reads a pipe line by line on a thread of its own, so a test can await "the line that
/// says X" with a deadline instead of sleeping.
final class LineCollector: Sendable {
    struct Timeout: Error, CustomStringConvertible {
        let description: String
    }

    private struct State {
        var lines: [String] = []
        var partial: [UInt8] = []
        var closed = false
        var generation = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextID = 0
    }

    let name: String
    private let state = Mutex(State())

    /// Takes ownership of `descriptor` (closed at end of file).
    init(name: String, descriptor: Int32) {
        self.name = name
        BlockingCall.detach { [self] in readLoop(descriptor) }
    }

    var lines: [String] { state.withLock { $0.lines } }
    var text: String { lines.joined(separator: "\n") }

    /// The first line satisfying `predicate`, waiting up to `timeout` for it.
    func line(timeout: Duration = .seconds(10), where predicate: @Sendable (String) -> Bool) async throws -> String {
        try await lines(count: 1, timeout: timeout, where: predicate)[0]
    }

    func line(containing text: String, timeout: Duration = .seconds(10)) async throws -> String {
        try await line(timeout: timeout) { $0.contains(text) }
    }

    /// The first `count` lines satisfying `predicate`.
    func lines(count: Int, timeout: Duration = .seconds(10), where predicate: @Sendable (String) -> Bool) async throws -> [String] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (generation, matches, closed) = state.withLock { ($0.generation, $0.lines.filter(predicate), $0.closed) }
            if matches.count >= count { return Array(matches.prefix(count)) }
            if closed || ContinuousClock.now >= deadline {
                throw Timeout(description: "\(name): \(matches.count) of \(count) expected lines after \(timeout)\(closed ? " (stream closed)" : ""); got:\n\(text)")
            }
            await changed(after: generation, until: deadline)
        }
    }

    /// Returns when everything was read (the writer closed its end) or at the deadline.
    func waitForEnd(timeout: Duration = .seconds(10)) async {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (generation, closed) = state.withLock { ($0.generation, $0.closed) }
            if closed || ContinuousClock.now >= deadline { return }
            await changed(after: generation, until: deadline)
        }
    }

    private func changed(after generation: Int, until deadline: ContinuousClock.Instant) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.changed(after: generation) }
            group.addTask { try? await Task.sleep(until: deadline, clock: .continuous) }
            await group.next()
            group.cancelAll()
        }
    }

    private func changed(after generation: Int) async {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state in
                    if state.generation != generation || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }

    private func readLoop(_ descriptor: Int32) {
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
                if n <= 0 {
                    if !state.partial.isEmpty { state.lines.append(String(decoding: state.partial, as: UTF8.self)) }
                    state.partial = []
                    state.closed = true
                } else {
                    for byte in buffer[0..<n] {
                        if byte == UInt8(ascii: "\n") {
                            state.lines.append(String(decoding: state.partial, as: UTF8.self))
                            state.partial = []
                        } else {
                            state.partial.append(byte)
                        }
                    }
                }
                state.generation += 1
                defer { state.waiters.removeAll() }
                return Array(state.waiters.values)
            }
            for waiter in waiters { waiter.resume() }
            if n <= 0 { return }
        }
    }
}
