import SecretRotation
import StackCore
import StackProcess
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// kill -9 of `rotate-secrets` at any moment, then one re-run: env file, every file
/// under apps/ and the row agree (§5.4 #29, the crash-safety requirement).
/// Real PostgreSQL, real supervisord (cheap programs, so the restart steps are killed
/// too), the real binary.
@Suite(.serialized) struct CrashSafetyTests {
    /// How a run ended.
    enum Ending: Equatable {
        case killed
        case exited(Int32)
    }

    /// Starts rotate-secrets and SIGKILLs it: at the pause hook before `pauseBefore`
    /// (waiting for the stop with waitpid(WUNTRACED), no polling), or after `delay`.
    static func killedRun(_ world: RotationWorld, _ secrets: InternalSecrets, socket: String,
                          pauseBefore: RotationStep? = nil, delay: Duration? = nil) async throws -> Ending {
        var environment = world.environment(secrets)
        if let pauseBefore { environment["STACK_ROTATE_TEST_PAUSE_BEFORE"] = pauseBefore.rawValue }
        let log = try POSIX.open(world.directory.file("killed.log"), O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        defer { POSIX.close(log) }
        let child = try Command(RotationWorld.rotateSecretsPath,
                                arguments: world.flags(supervisorSocket: socket, extra: ["--no-wait-listen"]),
                                environment: environment, standardInput: .discard,
                                standardOutput: .fileDescriptor(log), standardError: .fileDescriptor(log)).spawn()
        let pid = child.pid
        if pauseBefore != nil {
            let status = await BlockingCall.run { () -> Int32 in
                var status: Int32 = 0
                while waitpid(pid, &status, WUNTRACED) < 0 && errno == EINTR {}
                return status
            }
            // WIFSTOPPED: the low byte is 0x7f.
            guard status & 0xff == 0x7f else { return .exited(ExitStatus(waitStatus: status).shellCode) }
            kill(pid, SIGKILL)
            _ = try await child.waitForExit()
            return .killed
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // Cancelled (throws) once the run ended by itself: no signal to a reaped pid.
                try await Task.sleep(for: delay ?? .zero)
                child.send(SIGKILL)
            }
            _ = try await child.waitForExit()
            group.cancelAll()
            _ = try? await group.next()
        }
        // Whether the kill landed is decided by the log: a finished run ends with "done".
        let text = String(decoding: try POSIX.readFile(world.directory.file("killed.log")), as: UTF8.self)
        return text.hasSuffix("done\n") ? .exited(0) : .killed
    }

    static func supervisorPrograms() -> [SupervisordProgram] {
        ["stack-app", "cron-jobs"].map {
            SupervisordProgram(name: $0, script: "exec sleep 100000\n", startSeconds: 0, stopWaitSeconds: 5, stopAsGroup: true, killAsGroup: true)
        }
    }

    /// What an interruption left, for the report: nothing started, rewrite pending
    /// (with files on both keys or not), restart pending, or already complete.
    static func classify(_ world: RotationWorld, old: Secret, new: Secret) throws -> String {
        guard let journal = try RotationJournal.read(path: world.journalPath) else { return "no-journal" }
        if journal.phase == .restart { return "restart-pending" }
        var onOld = 0, onNew = 0
        for file in world.keyFiles {
            let content = try world.read(file)
            if content.contains(Array(old.unredacted.utf8)) { onOld += 1 }
            if content.contains(Array(new.unredacted.utf8)) { onNew += 1 }
        }
        return onOld > 0 && onNew > 0 ? "rewrite-pending-mixed" : "rewrite-pending"
    }

    /// Pause hook: a kill before each step, re-run with the same input and, separately,
    /// with a different input; both converge on the re-run's secrets.
    @Test func killBeforeEachStepThenRerunConverges() async throws {
        var world = try await RotationWorld.make()
        defer { world.remove() }
        try world.addGeneratedTree(count: 60, keyEvery: 3)
        try await SupervisordServer.with(programs: Self.supervisorPrograms()) { supervisord in
            var current = RotationWorld.placeholders
            var former: [Secret] = [current.publishableClientKey]
            for differentInput in [false, true] {
                for step in RotationStep.allCases {
                    let attempted = InternalSecrets.generate()
                    let ending = try await Self.killedRun(world, attempted, socket: supervisord.socketPath, pauseBefore: step)
                    #expect(ending == .killed, "\(step)")
                    let final = differentInput ? InternalSecrets.generate() : attempted
                    let rerun = try await world.rotate(final, supervisorSocket: supervisord.socketPath, flags: ["--no-wait-listen"])
                    #expect(rerun.status == .exited(0), "\(step): \(rerun.combinedText)")
                    former += [attempted.publishableClientKey, current.publishableClientKey]
                    try await world.expectConsistent(with: final, formerKeys: former)
                    #expect(!POSIX.exists(world.journalPath), "\(step)")
                    current = final
                }
            }
        }
    }

    /// A crash in the middle of the rewrite (some files on the old key, some on the
    /// intermediate one, env file already new, row still old), then a re-run with a
    /// *different* input: every file ends on the newest key.
    @Test func interruptedRewriteWithDifferentInputConverges() async throws {
        var world = try await RotationWorld.make()
        defer { world.remove() }
        let old = RotationWorld.placeholders.publishableClientKey
        let intermediate = InternalSecrets.generate()
        for index in 0..<10 {
            try world.addFile("f\(index).js", "a={KEY};b={KEY}", key: index % 2 == 0 ? old : intermediate.publishableClientKey)
        }
        try POSIX.makeDirectories(world.stateDirectory, mode: 0o700)
        try AtomicFile(path: world.envFilePath, mode: 0o600).write(RotationWorld.expectedEnvFile(intermediate))
        try RotationJournal(phase: .rewrite, newPublishableKey: intermediate.publishableClientKey, oldPublishableKeys: [old]).write(path: world.journalPath)

        let newest = InternalSecrets.generate()
        let output = try await world.rotate(newest)
        #expect(output.status == .exited(0), "\(output.combinedText)")
        #expect(output.standardOutputText.contains("resuming an interrupted rotation (phase rewrite)"))
        #expect(output.standardOutputText.contains("patched 10 file(s)"))
        try await world.expectConsistent(with: newest, formerKeys: [old, intermediate.publishableClientKey])
    }

    /// ≥ 50 kills at random moments — uniform over the duration of the previous complete
    /// run, so they land in every step — each followed by one re-run (every third with a
    /// different input), after which env file, files and row agree. Prints how many
    /// kills left which state.
    @Test func randomKillsThenOneRerunAlwaysConverge() async throws {
        var world = try await RotationWorld.make()
        defer { world.remove() }
        try world.addGeneratedTree(count: 300, keyEvery: 2)
        try await SupervisordServer.with(programs: Self.supervisorPrograms()) { supervisord in
            var current = InternalSecrets.generate()
            var former: [Secret] = [RotationWorld.placeholders.publishableClientKey]
            let clock = ContinuousClock()
            var started = clock.now
            let first = try await world.rotate(current, supervisorSocket: supervisord.socketPath, flags: ["--no-wait-listen"])
            #expect(first.status == .exited(0), "\(first.combinedText)")
            var lastRun = started.duration(to: clock.now)
            var generator = SystemRandomNumberGenerator()
            var states: [String: Int] = [:]
            var kills = 0
            var attempts = 0
            while kills < 60 && attempts < 200 {
                attempts += 1
                let attempted = InternalSecrets.generate()
                let delay = Duration.microseconds(Int64.random(in: 0...Int64(lastRun / .microseconds(1)), using: &generator))
                let ending = try await Self.killedRun(world, attempted, socket: supervisord.socketPath, delay: delay)
                if ending == .killed { kills += 1 }
                let state = ending == .killed ? try Self.classify(world, old: current.publishableClientKey, new: attempted.publishableClientKey) : "finished"
                states[state, default: 0] += 1
                let final = attempts % 3 == 0 ? InternalSecrets.generate() : attempted
                started = clock.now
                let rerun = try await world.rotate(final, supervisorSocket: supervisord.socketPath, flags: ["--no-wait-listen"])
                if final != attempted || state != "finished" { lastRun = started.duration(to: clock.now) }
                #expect(rerun.status == .exited(0), "attempt \(attempts) (\(state)): \(rerun.combinedText)")
                former += [current.publishableClientKey, attempted.publishableClientKey]
                try await world.expectConsistent(with: final, formerKeys: former)
                #expect(!POSIX.exists(world.journalPath))
                current = final
            }
            let summary = states.keys.sorted().map { "\($0)=\(states[$0]!)" }.joined(separator: " ")
            print("[crash-safety] \(kills) kill -9 at random moments (\(attempts) attempts), one re-run each: all consistent; state after the kill: \(summary)")
            #expect(kills >= 50)
        }
    }
}

extension CrashSafetyTests {
    /// Two rotations at once never interleave: the second waits for the first's lock
    /// (while the first is held stopped mid-run), then runs; the end state is the
    /// second's secrets everywhere.
    @Test func concurrentRotationsAreSerialized() async throws {
        var world = try await RotationWorld.make()
        defer { world.remove() }
        try world.addGeneratedTree(count: 20, keyEvery: 2)
        let first = InternalSecrets.generate()
        let second = InternalSecrets.generate()

        var environment = world.environment(first)
        environment["STACK_ROTATE_TEST_PAUSE_BEFORE"] = RotationStep.envFile.rawValue
        let firstChild = try Command(RotationWorld.rotateSecretsPath, arguments: world.flags(), environment: environment,
                                     standardInput: .discard, standardOutput: .discard, standardError: .discard).spawn()
        let pid = firstChild.pid
        let stopped = await BlockingCall.run { () -> Bool in
            var status: Int32 = 0
            while waitpid(pid, &status, WUNTRACED) < 0 && errno == EINTR {}
            return status & 0xff == 0x7f
        }
        #expect(stopped)

        let output = try Pipe2()
        let secondChild = try Command(RotationWorld.rotateSecretsPath, arguments: world.flags(), environment: world.environment(second),
                                      standardInput: .discard, standardOutput: .fileDescriptor(output.write), standardError: .discard).spawn()
        output.closeWrite()
        let reader = output.read
        let waiting = try await BlockingCall.run { () throws -> Bool in
            var text = ""
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !text.contains("waiting for another rotate-secrets") {
                let n = try buffer.withUnsafeMutableBytes { try POSIX.read(reader, into: $0, context: "stdout") }
                if n == 0 { return false }
                text += String(decoding: buffer[0..<n], as: UTF8.self)
            }
            return true
        }
        #expect(waiting)
        kill(pid, SIGCONT)
        #expect(try await firstChild.waitForExit() == .exited(0))
        #expect(try await secondChild.waitForExit() == .exited(0))
        output.closeRead()
        try await world.expectConsistent(with: second, formerKeys: [RotationWorld.placeholders.publishableClientKey, first.publishableClientKey])
    }
}
