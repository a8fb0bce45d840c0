import CSystem
import StackCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a finished command printed and how it ended.
public struct CommandOutput: Sendable {
    public let status: ExitStatus
    public let standardOutput: [UInt8]
    public let standardError: [UInt8]

    public var standardOutputText: String { String(decoding: standardOutput, as: UTF8.self) }
    public var standardErrorText: String { String(decoding: standardError, as: UTF8.self) }
}

extension Command {
    /// Runs the command to completion, feeding `input` on stdin (or /dev/null) and
    /// collecting stdout and stderr (each at most `outputLimit` bytes).
    ///
    /// On `timeout` the child (its whole group when it leads one) is killed with
    /// SIGKILL and `ProcessError.timedOut` is thrown. When the calling task is cancelled
    /// the child (group) gets SIGTERM, then SIGKILL after `cancellationGrace`; once it has
    /// exited `CancellationError` is thrown. A grandchild that keeps the output pipes open
    /// cannot hang the caller: collection stops `drainGrace` after the child exits.
    ///
    /// `waiter` collects the exit status; the default uses the process's `Reaper` when one
    /// is active (PID 1 / subreaper), else `waitpid(pid)`.
    public func run(
        input: [UInt8]? = nil,
        timeout: Duration? = nil,
        outputLimit: Int = 64 * 1024 * 1024,
        drainGrace: Duration = .milliseconds(500),
        cancellationGrace: Duration = .seconds(5),
        waiter: any ProcessWaiter = DefaultWaiter()
    ) async throws -> CommandOutput {
        var command = self
        let stdoutPipe = try Pipe()
        let stderrPipe = try Pipe()
        let stdinPipe = input == nil ? nil : try Pipe()
        command.standardOutput = .fileDescriptor(stdoutPipe.writeEnd)
        command.standardError = .fileDescriptor(stderrPipe.writeEnd)
        command.standardInput = stdinPipe.map { .fileDescriptor($0.readEnd) } ?? .discard

        let child: ChildProcess
        do {
            child = try waiter.spawn(command)
        } catch {
            stdoutPipe.closeBoth(); stderrPipe.closeBoth(); stdinPipe?.closeBoth()
            throw error
        }
        stdoutPipe.closeWriteEnd(); stderrPipe.closeWriteEnd(); stdinPipe?.closeReadEnd()

        let exited = Exited()
        if let stdinPipe, let input {
            let fd = stdinPipe.writeEnd
            BlockingCall.detach {
                // EPIPE (child closed stdin early) is not our failure; the status tells.
                try? input.withUnsafeBytes { try POSIX.writeAll(fd, $0, context: "stdin") }
                close(fd)
            }
        }
        async let out = BlockingCall.run { try PipeReader.drain(stdoutPipe.readEnd, limit: outputLimit, exited: exited, grace: drainGrace) }
        async let err = BlockingCall.run { try PipeReader.drain(stderrPipe.readEnd, limit: outputLimit, exited: exited, grace: drainGrace) }

        let ending: ExitWatch.Ending
        do {
            ending = try await ExitWatch.wait(for: child, waiter: waiter, timeout: timeout, cancellationGrace: cancellationGrace)
        } catch {
            exited.mark()
            _ = try? await out
            _ = try? await err
            throw error
        }
        exited.mark()
        switch ending {
        case .exited(let status):
            return CommandOutput(status: status, standardOutput: try await out, standardError: try await err)
        case .timedOut:
            _ = try? await out
            _ = try? await err
            throw ProcessError(.timedOut, "\(executable) did not finish within \(timeout.map { "\($0)" } ?? "its timeout")")
        case .cancelled:
            _ = try? await out
            _ = try? await err
            throw CancellationError()
        }
    }
}

/// Waits for a child's exit while enforcing a timeout (SIGKILL) and stopping the child
/// when the waiting task is cancelled (SIGTERM, SIGKILL after a grace). The wait itself
/// is never abandoned, so the child is always collected before this returns.
enum ExitWatch {
    enum Ending: Sendable {
        case exited(ExitStatus)
        case timedOut
        case cancelled
    }

    private enum Outcome: Sendable {
        case exited(ExitStatus)
        case timer
    }

    static func wait(for child: ChildProcess, waiter: any ProcessWaiter, timeout: Duration?, cancellationGrace: Duration) async throws -> Ending {
        let escalation = CancellationEscalation(child: child, grace: cancellationGrace)
        defer { escalation.finish() }
        let (status, timedOut) = try await withTaskCancellationHandler {
            try await withThrowingTaskGroup(of: Outcome.self) { group -> (ExitStatus, Bool) in
                group.addTask { .exited(try await waiter.waitForExit(child)) }
                if let timeout {
                    group.addTask {
                        try? await Task.sleep(for: timeout)
                        return .timer
                    }
                }
                var timedOut = false
                while let outcome = try await group.next() {
                    switch outcome {
                    case .exited(let status):
                        group.cancelAll()
                        return (status, timedOut)
                    case .timer:
                        // A timer cut short by cancellation is not a timeout: the
                        // cancellation handler is already stopping the child.
                        if !Task.isCancelled {
                            timedOut = true
                            child.sendToGroup(SIGKILL)
                        }
                    }
                }
                preconditionFailure("the exit watcher always finishes last")
            }
        } onCancel: {
            escalation.start()
        }
        if Task.isCancelled { return .cancelled }
        return timedOut ? .timedOut : .exited(status)
    }
}

/// SIGTERM now, SIGKILL after `grace` unless the child has been collected by then.
/// `finish()` (after the child was reaped) disarms it, so a recycled pid is never hit.
final class CancellationEscalation: Sendable {
    private struct State {
        var started = false
        var finished = false
        var killer: Task<Void, Never>?
    }

    private let child: ChildProcess
    private let grace: Duration
    private let state = Mutex(State())

    init(child: ChildProcess, grace: Duration) {
        self.child = child
        self.grace = grace
    }

    func start() {
        state.withLock { state in
            guard !state.started && !state.finished else { return }
            state.started = true
            child.sendToGroup(SIGTERM)
            let grace = self.grace
            // Unstructured on purpose: it must outlive the cancelled task's sleeps.
            state.killer = Task { [self] in
                try? await Task.sleep(for: grace)
                killIfRunning()
            }
        }
    }

    private func killIfRunning() {
        state.withLock { state in
            if !state.finished { child.sendToGroup(SIGKILL) }
        }
    }

    func finish() {
        let killer = state.withLock { state in
            state.finished = true
            return state.killer
        }
        killer?.cancel()
    }
}

/// The two ends of a close-on-exec pipe.
struct Pipe: Sendable {
    let readEnd: Int32
    let writeEnd: Int32

    init() throws {
        var fds: [Int32] = [-1, -1]
        let rc = fds.withUnsafeMutableBufferPointer { cs_pipe($0.baseAddress!) }
        if rc != 0 { throw ProcessError(.systemCall, "pipe", errno: -rc) }
        readEnd = fds[0]
        writeEnd = fds[1]
    }

    func closeReadEnd() { close(readEnd) }
    func closeWriteEnd() { close(writeEnd) }
    func closeBoth() { close(readEnd); close(writeEnd) }
}

/// Set once the child has been reaped; readers then stop waiting for EOF after a grace.
final class Exited: Sendable {
    private let at = Mutex<ContinuousClock.Instant?>(nil)
    func mark() { at.withLock { if $0 == nil { $0 = .now } } }
    var instant: ContinuousClock.Instant? { at.withLock { $0 } }
}

enum PipeReader {
    /// Reads `fd` to EOF (closing it), or until `grace` after `exited` is marked.
    static func drain(_ fd: Int32, limit: Int, exited: Exited, grace: Duration) throws -> [UInt8] {
        defer { close(fd) }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, 50)
            if ready < 0 {
                if errno == EINTR { continue }
                throw ProcessError(.systemCall, "poll", errno: errno)
            }
            if ready == 0 {
                if let at = exited.instant, ContinuousClock.now - at > grace { return result }
                continue
            }
            let n = try buffer.withUnsafeMutableBytes { try POSIX.read(fd, into: $0, context: "pipe") }
            if n == 0 { return result }
            if result.count + n > limit {
                throw ProcessError(.outputTooLarge, "output exceeded \(limit) bytes")
            }
            result.append(contentsOf: buffer[0..<n])
        }
    }
}
