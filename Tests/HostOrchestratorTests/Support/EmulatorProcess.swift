import StackCore
import StackProcess
import TestSupport
import Testing
@testable import HostOrchestrator
#if canImport(Glibc)
import Glibc
#endif

/// A `stack-emulator` process run as a user runs it, stdout and stderr going to files,
/// so a test can act when a line appears (send a signal mid-start) and read everything
/// afterwards. Tethered to the test process: a crashed test run does not leave it.
struct EmulatorProcess {
    let child: ChildProcess
    let tether: TestLifeline.Tether
    let outputPath: String
    let errorPath: String

    /// Starts `stack-emulator arguments…` in its own process group (a terminal's
    /// Ctrl-C reaches the group: `sendToGroup`), logs under `directory`.
    static func start(_ arguments: [String], environment: [String: String], logs directory: String, name: String) throws -> EmulatorProcess {
        let outputPath = Path.join(directory, "\(name).out")
        let errorPath = Path.join(directory, "\(name).err")
        let output = try POSIX.open(outputPath, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        defer { POSIX.close(output) }
        let errors = try POSIX.open(errorPath, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        defer { POSIX.close(errors) }
        let child = try Command(EmulatorCLITests.binary, arguments: arguments, environment: environment, processGroup: .new,
                                standardInput: .discard, standardOutput: .fileDescriptor(output), standardError: .fileDescriptor(errors)).spawn()
        return EmulatorProcess(child: child, tether: TestLifeline.tether(processGroup: child.pid), outputPath: outputPath, errorPath: errorPath)
    }

    var output: String { (try? POSIX.readFile(outputPath)).map { String(decoding: $0, as: UTF8.self) } ?? "" }
    var errors: String { (try? POSIX.readFile(errorPath)).map { String(decoding: $0, as: UTF8.self) } ?? "" }

    /// Polls stdout (from 2 ms, at most 20 ms apart: a file gives no notification) until
    /// a line contains `text`. False when the process ended first or `timeout` passed.
    func waitForOutput(_ text: String, timeout: Duration = .seconds(120)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        var delay = Duration.milliseconds(2)
        while ContinuousClock.now < deadline {
            if output.contains(text) { return true }
            // Ended (a zombie until `exit` reaps it): nothing more will be written.
            if ProcessTable.entry(pid: child.pid)?.isZombie ?? true { return output.contains(text) }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .milliseconds(20))
        }
        return false
    }

    /// Waits for the exit, at most `timeout` (generous: it proves "not forever"); then
    /// SIGKILL and a thrown error.
    func exit(timeout: Duration = .seconds(120)) async throws -> StackProcess.ExitStatus {
        let status = try await child.exitStatus(within: timeout)
        tether.release()
        guard let status else {
            throw StackError(.systemCall, "stack-emulator \(child.pid) did not exit within \(timeout); stdout: \(output.suffix(2000)) stderr: \(errors.suffix(2000))")
        }
        return status
    }

    /// Runs `stack-emulator arguments…` to its end (bounded) and returns its output.
    static func run(_ arguments: [String], environment: [String: String], timeout: Duration = .seconds(180)) async throws -> CommandOutput {
        try await Command(EmulatorCLITests.binary, arguments: arguments, environment: environment).run(timeout: timeout)
    }
}

extension EmulatorTestBed {
    /// The publishable key the guest's dashboard serves (`/handler/key.js`).
    func servedKey() async throws -> String {
        let script = try await HTTPGet.body(port: try port(.dashboard), path: "/handler/key.js")
        guard let key = EmulatorFlowTests.firstHex64(in: script) else {
            throw StackError(.systemCall, "no key in key.js: \(script)")
        }
        return key
    }

    /// What VM_DIR/internal-pck holds, nil when it does not exist.
    func internalPCKText() throws -> String? {
        let path = try paths.internalPCK
        guard POSIX.exists(path) else { return nil }
        return String(decoding: try POSIX.readFile(path), as: UTF8.self)
    }

    /// QEMU processes started for this bed's run directory (their argv names its pid
    /// file), found by reading every `/proc/<pid>/cmdline`: independent of the code
    /// under test.
    func qemuProcesses() throws -> [pid_t] {
        let pidFile = try paths.pidFile
        var found: [pid_t] = []
        for entry in ProcessTable.entries() where !entry.isZombie {
            guard let raw = try? POSIX.readFile("/proc/\(entry.pid)/cmdline", limit: 1 << 20) else { continue }
            let argv = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if argv.first.map({ Path.lastComponent(of: $0).hasPrefix("qemu-system") }) == true, argv.contains(pidFile) {
                found.append(entry.pid)
            }
        }
        return found
    }

    /// True when no process holds the run directory's lock (taken and released at once).
    func lockIsFree() throws -> Bool {
        guard let lock = try? StartLock.tryAcquire(path: try paths.lockFile) else { return false }
        lock.release()
        return true
    }
}
