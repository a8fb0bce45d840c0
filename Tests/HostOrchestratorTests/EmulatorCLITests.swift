import StackCore
import StackProcess
import TestSupport
import Testing
@testable import HostOrchestrator
#if canImport(Glibc)
import Glibc
#endif

/// The `stack-emulator` executable itself: argument rules, exit codes, the lock, a
/// stale pid file. None of these boots a VM.
@Suite struct EmulatorCLITests {
    /// Next to the test bundle: SwiftPM builds it because the test target depends on it.
    static var binary: String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let exe = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ".build/debug/x"
        return Path.join(Path.directory(of: exe), "stack-emulator")
    }

    /// An emulator home with no images and no VM (nothing can start).
    func environment(_ temp: TestDirectory, _ extra: [String: String] = [:]) throws -> [String: String] {
        let ports = try TestSockets.freePorts(4)
        return [
            "PATH": Command.defaultSearchPath, "HOME": temp.path, "STACK_EMULATOR_HOME": temp.path,
            "EMULATOR_ACCEL": "tcg", "EMULATOR_HOST_SHARE": "off", "PORT_PREFIX": TestSockets.freePrefix(),
            "EMULATOR_DASHBOARD_PORT": "\(ports[0])", "EMULATOR_BACKEND_PORT": "\(ports[1])",
            "EMULATOR_MINIO_PORT": "\(ports[2])", "EMULATOR_INBUCKET_PORT": "\(ports[3])",
        ].merging(extra) { $1 }
    }

    func run(_ arguments: [String], _ environment: [String: String]) async throws -> CommandOutput {
        try await Command(EmulatorCLITests.binary, arguments: arguments, environment: environment).run(timeout: .seconds(60))
    }

    /// §4.19-1: an unknown word prints the usage and exits 1; options of no subcommand too.
    @Test func unknownWordPrintsUsageAndExitsOne() async throws {
        let temp = try TestDirectory(prefix: "hp-cli")
        defer { temp.remove() }
        let output = try await run(["foo"], try environment(temp))
        #expect(output.status == .exited(1))
        #expect(output.standardErrorText.contains("Usage: stack-emulator [start|stop|reset|status|bench|capture]"))
        let option = try await run(["status", "--frobnicate"], try environment(temp))
        #expect(option.status == .exited(1), "\(option.standardErrorText)")
    }

    /// §4.19-1: the last action word wins; no word means start.
    @Test func lastActionWordWinsAndNoWordMeansStart() async throws {
        let temp = try TestDirectory(prefix: "hp-cli")
        defer { temp.remove() }
        let env = try environment(temp)
        // `start stop status` runs status: the 7-line table, exit 1 (nothing runs).
        let status = try await run(["start", "stop", "status"], env)
        #expect(status.status == .exited(1))
        #expect(status.standardOutputText == """
            VM:
              ○ emulator

            Services:
              ○ Dashboard (:\(env["EMULATOR_DASHBOARD_PORT"]!))
              ○ Backend (:\(env["EMULATOR_BACKEND_PORT"]!))
              ○ MinIO (:\(env["EMULATOR_MINIO_PORT"]!))
              ○ Inbucket HTTP (:\(env["EMULATOR_INBUCKET_PORT"]!))

            """)
        // No word: start, which stops at the missing base image (§4.7) with exit 1.
        let start = try await run([], env)
        #expect(start.status == .exited(1))
        #expect(start.standardErrorText.contains("[emulator] Base image not found at \(temp.path)/images/stack-emulator-amd64.qcow2"), "\(start.standardErrorText)")
        #expect(start.standardOutputText.contains("Starting QEMU local emulator"))
        // `stop start` is start too.
        #expect(try await run(["stop", "start"], env).standardErrorText.contains("Base image not found"))
    }

    /// §4.19-43 wording for malformed variables, exit 1.
    @Test func invalidPortVariableFailsWithTheCLIMessage() async throws {
        let temp = try TestDirectory(prefix: "hp-cli")
        defer { temp.remove() }
        let output = try await run(["status"], try environment(temp, ["EMULATOR_BACKEND_PORT": "abc"]))
        #expect(output.status == .exited(1))
        #expect(output.standardErrorText.contains("Invalid EMULATOR_BACKEND_PORT: abc"))
    }

    /// §5.4 #12: while one invocation holds the lock (here: this test, as a start would),
    /// a second start fails at once with a message naming the holder.
    @Test func secondStartWhileOneRunsIsRefusedByTheLock() async throws {
        let temp = try TestDirectory(prefix: "hp-cli")
        defer { temp.remove() }
        let env = try environment(temp)
        let configuration = try EmulatorConfiguration(environment: env, host: HostPlatform(architecture: .amd64, os: .linux, kernelRelease: "t"),
                                                      currentDirectory: "/")
        let lock = try await StartLock.acquire(path: configuration.paths.lockFile)
        let started = ContinuousClock.now
        let output = try await run(["start"], env)
        // The lock is held until after this returns, so any answer at all means the second
        // start did not wait for it; the bound only has to absorb a loaded machine.
        #expect(ContinuousClock.now - started < .seconds(90))
        #expect(output.status == .exited(1))
        #expect(output.standardErrorText.contains("stack-emulator pid \(getpid()) is already starting, stopping or capturing this emulator"),
                "\(output.standardErrorText)")
        lock.release()
        // Released: the next start gets past the lock (and stops at the missing image).
        #expect(try await run(["start"], env).standardErrorText.contains("Base image not found"))
    }

    /// Issue 12: a service listening only on [::1] takes the port for a browser opening
    /// `localhost`: start refuses with the port message before launching anything.
    @Test func serviceOnIPv6LoopbackOnlyStopsStart() async throws {
        let temp = try TestDirectory(prefix: "hp-cli")
        defer { temp.remove() }
        let listener = try TestSockets.boundIPv6(listening: true, address: in6addr_loopback)
        defer { close(listener.fd) }
        let output = try await run(["start"], try environment(temp, ["EMULATOR_BACKEND_PORT": "\(listener.port)"]))
        #expect(output.status == .exited(1))
        #expect(output.standardErrorText.contains("[emulator] Port \(listener.port) is already in use. Stop any conflicting services first."),
                "\(output.standardErrorText)")
        #expect(!output.standardOutputText.contains("Starting QEMU"), "nothing was launched")
    }

    /// §5.4 #11: a pid file naming another live program: status says down, stop removes
    /// the file and signals nobody.
    @Test func stalePidFileIsRemovedWithoutSignallingItsProcess() async throws {
        let temp = try TestDirectory(prefix: "hp-cli")
        defer { temp.remove() }
        let env = try environment(temp)
        let paths = try EmulatorConfiguration(environment: env, host: HostPlatform(architecture: .amd64, os: .linux, kernelRelease: "t"),
                                              currentDirectory: "/").paths
        try paths.prepareVMDirectory()
        let sleeper = try Command("/bin/sleep", arguments: ["60"], environment: [:]).spawn()
        defer { sleeper.send(SIGKILL); _ = try? sleeper.exitStatusIfEnded() }
        try AtomicFile(path: paths.pidFile).write(Array("\(sleeper.pid)\n".utf8))

        let status = try await run(["status"], env)
        #expect(status.status == .exited(1))
        #expect(status.standardOutputText.hasPrefix("VM:\n  ○ emulator\n"))
        let stop = try await run(["stop"], env)
        #expect(stop.status == .exited(0))
        #expect(stop.standardOutputText.contains("Removed a stale pid file"), "\(stop.standardOutputText)")
        #expect(stop.standardOutputText.hasSuffix("[emulator] QEMU emulator stopped.\n"))
        #expect(!POSIX.exists(paths.pidFile))
        #expect(kill(sleeper.pid, 0) == 0, "the unrelated process must live")
        sleeper.send(SIGKILL)
        _ = try await sleeper.waitForExit()
    }

    /// §4.19-32 (no pid file), §4.19-33: stop with nothing running succeeds; reset removes
    /// RUN_DIR and keeps IMAGE_DIR.
    @Test func stopWithoutVMSucceedsAndResetKeepsImages() async throws {
        let temp = try TestDirectory(prefix: "hp-cli")
        defer { temp.remove() }
        let env = try environment(temp)
        let stop = try await run(["stop"], env)
        #expect(stop.status == .exited(0) && stop.standardOutputText == "[emulator] QEMU emulator stopped.\n")
        try POSIX.makeDirectories(temp.file("run/vm"))
        try POSIX.makeDirectories(temp.file("images/snapshots"))
        try AtomicFile(path: temp.file("run/vm/disk.qcow2")).write([1])
        let reset = try await run(["reset"], env)
        #expect(reset.status == .exited(0))
        #expect(reset.standardOutputText.hasSuffix("Emulator state reset. Next start will be a fresh boot.\n"))
        #expect(!POSIX.exists(temp.file("run")))
        #expect(POSIX.exists(temp.file("images/snapshots")))
    }
}
