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
    /// SIGKILL and `ProcessError.timedOut` is thrown. A grandchild that keeps the output
    /// pipes open cannot hang the caller: collection stops `drainGrace` after the
    /// child exits.
    public func run(
        input: [UInt8]? = nil,
        timeout: Duration? = nil,
        outputLimit: Int = 64 * 1024 * 1024,
        drainGrace: Duration = .milliseconds(500)
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
            child = try command.spawn()
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

        let status: ExitStatus
        if let timeout {
            let finished: ExitStatus? = try await withThrowingTaskGroup(of: ExitStatus?.self) { group in
                group.addTask { try await child.waitForExit() }
                group.addTask {
                    try? await Task.sleep(for: timeout)
                    return nil
                }
                if let status = try await group.next()! {
                    group.cancelAll()
                    return status
                }
                child.sendToGroup(SIGKILL)
                _ = try await group.next()
                return nil
            }
            guard let finished else {
                exited.mark()
                _ = try? await out
                _ = try? await err
                throw ProcessError(.timedOut, "\(executable) did not finish within \(timeout)")
            }
            status = finished
        } else {
            status = try await child.waitForExit()
        }
        exited.mark()
        return CommandOutput(status: status, standardOutput: try await out, standardError: try await err)
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
