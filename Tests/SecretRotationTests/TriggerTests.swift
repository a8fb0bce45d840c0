import CSystem
import StackCore
import StackProcess
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The real `trigger-fast-rotate` → a `docker` shim first on PATH → the real
/// `rotate-secrets` against a real database (§3.1, §3.3).
@Suite struct TriggerTests {
    /// A world plus a docker shim whose running container "stack" has the container
    /// environment (placeholders, WORK_DIR, connection string) and runs rotate-secrets
    /// through a wrapper that adds the test's env-file path (no secret on that line).
    struct Setup {
        var world: RotationWorld
        let shim: DockerShim
        let wrapper: String

        static func make(containerEnvironment extra: [String: String] = [:]) async throws -> Setup {
            var world = try await RotationWorld.make()
            try world.addFile("backend/bundle.js", "k=\"{KEY}\"")
            let shim = try DockerShim.create(in: world.directory.path)
            let wrapper = world.directory.file("rotate-secrets-in-container")
            try AtomicFile(path: wrapper, mode: 0o755).write(Array("""
                #!/bin/sh
                exec '\(RotationWorld.rotateSecretsPath)' --env-file-path '\(world.envFilePath)' --no-restart "$@"

                """.utf8))
            try shim.addContainer("stack", environment: world.environment(nil, extra: extra))
            return Setup(world: world, shim: shim, wrapper: wrapper)
        }

        /// The guest's environment for the trigger: PATH with the shim first.
        func triggerEnvironment(rotateCommand: String? = nil) -> [String: String] {
            ["PATH": shim.path(), "STACK_ROTATE_SECRETS_COMMAND": rotateCommand ?? wrapper]
        }

        func trigger(_ input: [UInt8], rotateCommand: String? = nil) async throws -> CommandOutput {
            try await Command(RotationWorld.triggerPath, environment: triggerEnvironment(rotateCommand: rotateCommand))
                .run(input: input, timeout: .seconds(120))
        }

        func remove() { world.remove() }
    }

    static let names = InternalSecrets.Name.allCases.map(\.variable)

    /// §3.3-1, §3.3-2 and §3.3-3 (adapted: there is no temp file at all), §5.5-6: four
    /// valid lines ⇒ exit 0 and the container's rotated-secrets.env holds them; docker is
    /// called with the variable names only; no stack-fresh-* file anywhere.
    @Test func triggerRotatesThroughDockerExec() async throws {
        let setup = try await Setup.make()
        defer { setup.remove() }
        let secrets = InternalSecrets.generate()
        let output = try await setup.trigger(secrets.payload)
        #expect(output.status == .exited(0), "\(output.combinedText)")
        #expect(output.standardOutputText.contains("[rotate-secrets] done"))
        #expect(output.revealsNothing(of: secrets))
        try await setup.world.expectConsistent(with: secrets, formerKeys: [RotationWorld.placeholders.publishableClientKey])
        let calls = try setup.shim.invocations()
        var expected: [String] = ["exec"]
        for name in Self.names { expected += ["-e", name] }
        expected += ["stack", setup.wrapper]
        #expect(calls == [expected])
        let leftovers = try await TestShell.run("ls -d /run/stack-fresh-* /var/run/stack-fresh-* /tmp/stack-fresh-* 2>/dev/null || true")
        #expect(leftovers.isEmpty)
    }

    /// §3.3-4, §5.5-5: while rotate-secrets runs (held at the test pause hook), no
    /// process on the machine has any of the four values in its argv — the values are in
    /// rotate-secrets' environment instead.
    @Test func noSecretInAnyArgvWhileRotating() async throws {
        let setup = try await Setup.make(containerEnvironment: ["STACK_ROTATE_TEST_PAUSE_BEFORE": "rewrite"])
        defer { setup.remove() }
        let secrets = InternalSecrets.generate()

        let stdin = try Pipe2()
        let stdout = try Pipe2()
        let child = try Command(RotationWorld.triggerPath, environment: setup.triggerEnvironment(),
                                standardInput: .fileDescriptor(stdin.read), standardOutput: .fileDescriptor(stdout.write),
                                standardError: .fileDescriptor(stdout.write)).spawn()
        stdin.closeRead(); stdout.closeWrite()
        var finished = false
        defer { if !finished { child.send(SIGKILL); _ = try? child.exitStatusIfEnded() } }
        try POSIX.writeAll(stdin.write, secrets.payload, context: "stdin")
        stdin.closeWrite()

        let reader = stdout.read
        let announced = try await BlockingCall.run { () throws -> String in
            var text = ""
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !text.contains("test pause before rewrite pid=") || !text.hasSuffix("\n") {
                let n = try buffer.withUnsafeMutableBytes { try POSIX.read(reader, into: $0, context: "trigger stdout") }
                if n == 0 { break }
                text += String(decoding: buffer[0..<n], as: UTF8.self)
            }
            return text
        }
        let pidText = try #require(announced.split(separator: "pid=").last?.prefix(while: { $0.isNumber }))
        let rotatePid = try #require(Int32(pidText))
        try await Self.waitUntilStopped(rotatePid)

        var scanned = 0
        for pid in Self.allPids() {
            guard let argv = try? POSIX.readFile("/proc/\(pid)/cmdline") else { continue }
            scanned += 1
            for name in InternalSecrets.Name.allCases {
                #expect(!argv.contains(Array(secrets[name].unredacted.utf8)), "pid \(pid) has \(name.variable) in its argv")
            }
        }
        #expect(scanned > 3)
        let environment = try RestartTests.environ(rotatePid)
        for name in InternalSecrets.Name.allCases {
            #expect(environment[name.variable] == secrets[name].unredacted)
        }
        let rotateArgv = String(decoding: try POSIX.readFile("/proc/\(rotatePid)/cmdline"), as: UTF8.self)
        #expect(rotateArgv.hasPrefix(RotationWorld.rotateSecretsPath))

        kill(rotatePid, SIGCONT)
        let status = try await child.waitForExit()
        finished = true
        stdout.closeRead()
        #expect(status == .exited(0))
        try await setup.world.expectConsistent(with: secrets, formerKeys: [RotationWorld.placeholders.publishableClientKey])
    }

    /// §3.3-5, §5.4 #27: invalid input ⇒ exit 1 before docker is called, naming the
    /// variable; a failing rotate-secrets' status and message come through; any status of
    /// the in-container command is the trigger's.
    @Test func triggerPropagatesExitStatus() async throws {
        let setup = try await Setup.make()
        defer { setup.remove() }
        let valid = InternalSecrets.generate()
        let cases: [([UInt8], String)] = [
            (Array("STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY=xyz".utf8), "STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY is not a 64-character hex string"),
            (Self.payload(valid, replacing: .cronSecret, with: nil), "CRON_SECRET is missing"),
            (Self.payload(valid, replacing: .cronSecret, with: InternalSecrets.Name.cronSecret.placeholder), "CRON_SECRET is the public build placeholder"),
            (valid.payload + Array("\nEXTRA=1".utf8), "unexpected key EXTRA"),
            ([UInt8](repeating: UInt8(ascii: "#"), count: 70_000), "more than 65536 bytes"),
            ([], "is missing"),
        ]
        for (input, message) in cases {
            let output = try await setup.trigger(input)
            #expect(output.status == .exited(1))
            #expect(output.standardOutputText.contains(message), "\(output.combinedText)")
            #expect(output.revealsNothing(of: valid))
        }
        #expect(try setup.shim.invocations().isEmpty)

        try await setup.world.database!.psql(#"DELETE FROM "ApiKeySet""#)
        let failed = try await setup.trigger(valid.payload)
        #expect(failed.status == .exited(1))
        #expect(failed.standardOutputText.contains("[rotate-secrets] ERROR: no internal ApiKeySet row"), "\(failed.combinedText)")

        let seven = setup.world.directory.file("exit7")
        try AtomicFile(path: seven, mode: 0o755).write(Array("#!/bin/sh\nexit 7\n".utf8))
        #expect(try await setup.trigger(valid.payload, rotateCommand: seven).status == .exited(7))
    }

    /// §3.3-6: container not running ⇒ non-zero exit with docker's message; rotate-secrets
    /// never ran.
    @Test func containerNotRunningFails() async throws {
        let setup = try await Setup.make()
        defer { setup.remove() }
        try setup.shim.setRunning("stack", false)
        let output = try await setup.trigger(InternalSecrets.generate().payload)
        #expect(output.status == .exited(1))
        #expect(output.standardErrorText.contains("container stack is not running"))
        #expect(!POSIX.exists(setup.world.envFilePath))
    }

    /// The guest has no Postgres client library: trigger-fast-rotate must not need one.
    @Test func triggerDoesNotLinkLibpq() async throws {
        let libraries = try await TestShell.run("ldd '\(RotationWorld.triggerPath)'")
        #expect(!libraries.isEmpty)
        #expect(!libraries.contains("libpq"))
        let rotate = try await TestShell.run("ldd '\(RotationWorld.rotateSecretsPath)'")
        #expect(rotate.contains("libpq"))
    }

    /// `secrets`' payload with one line changed (nil: left out).
    static func payload(_ secrets: InternalSecrets, replacing name: InternalSecrets.Name, with value: String?) -> [UInt8] {
        let lines = InternalSecrets.Name.allCases.compactMap { current -> String? in
            if current != name { return "\(current.variable)=\(secrets[current].unredacted)" }
            return value.map { "\(current.variable)=\($0)" }
        }
        return Array(lines.joined(separator: "\n").utf8)
    }

    static func allPids() -> [Int32] {
        guard let proc = opendir("/proc") else { return [] }
        defer { closedir(proc) }
        var pids: [Int32] = []
        while let entry = readdir(proc) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if let pid = Int32(name) { pids.append(pid) }
        }
        return pids
    }

    /// The pause hook stops the process right after announcing it; procfs has no event
    /// for that, so this polls its state from 10 ms with backoff.
    static func waitUntilStopped(_ pid: Int32) async throws {
        var delay = Duration.milliseconds(10)
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            let stat = String(decoding: try POSIX.readFile("/proc/\(pid)/stat"), as: UTF8.self)
            if let close = stat.lastIndex(of: ")"), stat[stat.index(close, offsetBy: 2)] == "T" { return }
            guard ContinuousClock.now < deadline else { throw StackError(.systemCall, "pid \(pid) did not stop") }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .milliseconds(200))
        }
    }
}

/// A plain pipe for streaming a child's output in a test.
struct Pipe2 {
    let read: Int32
    let write: Int32

    init() throws {
        var fds: [Int32] = [-1, -1]
        let rc = fds.withUnsafeMutableBufferPointer { cs_pipe($0.baseAddress!) }
        guard rc == 0 else { throw StackError.systemCall("pipe", errno: -rc) }
        read = fds[0]
        write = fds[1]
    }

    func closeRead() { close(read) }
    func closeWrite() { close(write) }
}
