import CSystem
import StackCore
import StackProcess
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The `supervisor-harness` executable running in a process of its own (optionally as
/// PID 1 of a new PID namespace), with its stdout and stderr collected line by line.
final class HarnessProcess: Sendable {
    /// The process we started: the harness, or `unshare` around it.
    let process: ChildProcess
    let output: LineCollector
    let log: LineCollector
    /// The write end of the harness's stdin: closed by teardown or by our death, which
    /// makes the harness shut down (`--exit-with-stdin`) instead of leaking.
    private let lifeline: Int32
    private let exitStatus = Mutex<ExitStatus?>(nil)

    init(process: ChildProcess, output: LineCollector, log: LineCollector, lifeline: Int32) {
        self.process = process
        self.output = output
        self.log = log
        self.lifeline = lifeline
    }

    struct Failure: Error, CustomStringConvertible { let description: String }

    /// Next to the test bundle: SwiftPM builds it because the test target depends on it.
    static var executablePath: String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let exe = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ".build/debug/x"
        return Path.join(Path.directory(of: exe), "supervisor-harness")
    }

    /// Runs `body` with a started harness and tears it down afterwards whatever happened:
    /// SIGTERM, then SIGKILL to it and every descendant still alive.
    static func with<T>(
        _ arguments: [String],
        pidNamespace: Bool = false,
        _ body: (HarnessProcess) async throws -> T
    ) async throws -> T {
        let harness = try start(arguments, pidNamespace: pidNamespace)
        do {
            let result = try await body(harness)
            await harness.tearDown()
            return result
        } catch {
            await harness.tearDown()
            throw error
        }
    }

    private static func start(_ arguments: [String], pidNamespace: Bool) throws -> HarnessProcess {
        let stdinPipe = try pipe()
        let stdoutPipe = try pipe()
        let stderrPipe = try pipe()
        defer { close(stdinPipe.read); close(stdoutPipe.write); close(stderrPipe.write) }
        let executable = pidNamespace ? "/usr/bin/unshare" : executablePath
        let harnessArguments = arguments + ["--exit-with-stdin"]
        let fullArguments = pidNamespace
            ? ["--pid", "--fork", "--mount-proc", "--kill-child", executablePath] + harnessArguments
            : harnessArguments
        let process = try Command(
            executable, arguments: fullArguments, environment: ProcessEnvironment.current,
            processGroup: .new, standardInput: .fileDescriptor(stdinPipe.read),
            standardOutput: .fileDescriptor(stdoutPipe.write), standardError: .fileDescriptor(stderrPipe.write)
        ).spawn()
        return HarnessProcess(
            process: process,
            output: LineCollector(name: "harness stdout", descriptor: stdoutPipe.read),
            log: LineCollector(name: "harness stderr", descriptor: stderrPipe.read),
            lifeline: stdinPipe.write)
    }

    private static func pipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        let rc = fds.withUnsafeMutableBufferPointer { cs_pipe($0.baseAddress!) }
        if rc != 0 { throw Failure(description: "pipe failed: errno \(-rc)") }
        return (fds[0], fds[1])
    }

    /// The harness's own pid as seen from here (under unshare: the child of `unshare`).
    func harnessPID() throws -> pid_t {
        guard let entry = ProcessTable.children(of: process.pid).first else {
            throw Failure(description: "no harness process under unshare pid \(process.pid)")
        }
        return entry.pid
    }

    func send(_ signal: Int32, pidNamespace: Bool = false) throws {
        let target = pidNamespace ? try harnessPID() : process.pid
        guard kill(target, signal) == 0 else { throw Failure(description: "kill \(target) failed: errno \(errno)") }
    }

    /// Waits for the harness to exit (it must, within `timeout`; else it and its
    /// descendants are killed and this throws), then for the rest of its output.
    func waitForExit(timeout: Duration = .seconds(10)) async throws -> ExitStatus {
        if let status = exitStatus.withLock({ $0 }) { return status }
        let process = self.process
        let (status, timedOut) = try await withThrowingTaskGroup(of: ExitStatus?.self) { group -> (ExitStatus, Bool) in
            group.addTask { try await process.waitForExit() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            var timedOut = false
            while let ending = try await group.next() {
                if let status = ending {
                    group.cancelAll()
                    return (status, timedOut)
                }
                if !Task.isCancelled {
                    timedOut = true
                    killTree()
                }
            }
            preconditionFailure("the exit waiter always finishes")
        }
        exitStatus.withLock { $0 = status }
        await output.waitForEnd(timeout: .seconds(2))
        await log.waitForEnd(timeout: .seconds(2))
        if timedOut {
            throw Failure(description: "harness did not exit within \(timeout); stdout:\n\(output.text)\nstderr:\n\(log.text)")
        }
        return status
    }

    /// The `result …` line's fields, e.g. `["cause": "signal:15", "exit-code": "0"]`.
    func result() async throws -> [String: String] {
        let line = try await output.line { $0.hasPrefix("result ") }
        var fields: [String: String] = [:]
        for field in line.dropFirst("result ".count).split(separator: " ") {
            let parts = field.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        return fields
    }

    private func tearDown() async {
        defer { close(lifeline) }
        if exitStatus.withLock({ $0 }) != nil { return }
        process.send(SIGTERM)
        _ = try? await waitForExit(timeout: .seconds(5))
    }

    /// SIGKILL to the process and every descendant (children lead their own groups).
    private func killTree() {
        let table = ProcessTable.entries()
        var doomed: Set<pid_t> = [process.pid]
        var grew = true
        while grew {
            grew = false
            for entry in table where doomed.contains(entry.parent) && !doomed.contains(entry.pid) {
                doomed.insert(entry.pid)
                grew = true
            }
        }
        for pid in doomed { kill(pid, SIGKILL) }
    }
}

/// Scripts and FIFOs for the children, in a private temporary directory.
///
/// Not `TemporaryDirectory`: its init turns a pointer into a temporary array's storage
/// into a String after the array is gone, which crashed this suite now and then.
struct Fixture: Sendable {
    let path: String

    init() throws {
        var template = Array("/tmp/supervise-XXXXXX".utf8CString)
        let created: String? = template.withUnsafeMutableBufferPointer { buffer in
            guard let result = mkdtemp(buffer.baseAddress!) else { return nil }
            return String(cString: result)
        }
        guard let created else { throw HarnessProcess.Failure(description: "mkdtemp in /tmp failed: errno \(errno)") }
        path = created
    }

    /// rm -rf (waits for rm only, never for another task).
    func remove() {
        guard let child = try? Command("/bin/rm", arguments: ["-rf", path], environment: [:]).spawn() else { return }
        var status: Int32 = 0
        while waitpid(child.pid, &status, 0) < 0 && errno == EINTR {}
    }

    /// Writes `text` to `name` and returns its path.
    @discardableResult
    func file(_ name: String, _ text: String) throws -> String {
        let path = Path.join(self.path, name)
        try AtomicFile(path: path, mode: 0o644).write(Array(text.utf8))
        return path
    }

    func fifo(_ name: String) throws -> String {
        let path = Path.join(self.path, name)
        guard mkfifo(path, 0o600) == 0 else { throw HarnessProcess.Failure(description: "mkfifo \(path): errno \(errno)") }
        return path
    }

    /// Reads one line a child writes to the FIFO at `path`.
    func readFIFO(_ path: String, timeout: Duration = .seconds(10)) async throws -> String {
        let text: String? = await withTaskGroup(of: String?.self) { group in
            group.addTask {
                await BlockingCall.run {
                    guard let bytes = try? POSIX.readFile(path) else { return "" }
                    return String(decoding: bytes, as: UTF8.self)
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next()!
            if first == nil {
                // Release the reader blocked in open(2) by appearing as a writer.
                let fd = open(path, O_WRONLY | O_NONBLOCK)
                if fd >= 0 { close(fd) }
            }
            group.cancelAll()
            _ = await group.next()
            return first
        }
        guard let text else { throw HarnessProcess.Failure(description: "nothing written to \(path) within \(timeout)") }
        return text.split(separator: "\n").first.map(String.init) ?? ""
    }

    /// Writes a line to the FIFO at `path` (waits for a reader).
    func writeFIFO(_ path: String, _ line: String) async throws {
        try await BlockingCall.run {
            let fd = try POSIX.open(path, O_WRONLY)
            defer { close(fd) }
            try POSIX.writeAll(fd, Array((line + "\n").utf8), context: path)
        }
    }
}

/// True while `pid` exists and is not a zombie.
func isAlive(_ pid: pid_t) -> Bool {
    guard let entry = ProcessTable.entry(pid: pid) else { return false }
    return !entry.isZombie
}
