@testable import QEMUControl
import StackCore
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// GuestAgentClient against a real `qemu-ga -m unix-listen` on the host.
@Suite struct GuestAgentClientTests {
    /// The stream before a sync holds junk: replies nobody asked this client for, a stale
    /// guest-sync-delimited answer with a foreign id, and half a request in the agent's
    /// parser. sync must skip all of it (including the parse error the 0xFF causes).
    @Test func syncSkipsStaleRepliesAndJunk() async throws {
        try await GuestAgentProcess.with { agent in
            let qga = try await GuestAgentClient.connect(path: agent.socketPath)
            defer { qga.close() }
            try qga.sendRaw(Array(#"{"execute":"guest-info","id":1}"#.utf8) + [0x0A])
            try qga.sendRaw(Array(#"{"execute":"guest-ping"}"#.utf8) + [0x0A])
            try qga.sendRaw([0xFF] + Array(#"{"execute":"guest-sync-delimited","arguments":{"id":7}}"#.utf8) + [0x0A])
            try qga.sendRaw(Array(#"{"execute":"guest-exec-status","arguments":{"pid":"#.utf8))
            try await qga.sync(deadline: .now + .seconds(10))
            // guest-info's and guest-ping's replies, the id-7 sync reply, the parse error
            // for our 0xFF and the one for the half request were all skipped.
            #expect(qga.skippedCount >= 5)
            try await qga.ping()
            let info = try await qga.info()
            let banner = try await TestShell.run("\(GuestAgentProcess.executable) --version")
            #expect(banner.contains(info.version))
            #expect(info.isEnabled("guest-exec"))
            #expect(!info.isEnabled("guest-set-time"))
        }
    }

    /// Only a reply right after the agent's 0xFF marker that returns one of our ids ends
    /// a sync: not a stale delimited reply, not an undelimited one, not an error.
    @Test func syncAcceptsOnlyDelimitedRepliesEchoingOurIDs() throws {
        let decode = GuestAgentMessage.makeDecoder()
        func messages(_ items: [FramedItem]) -> [GuestAgentMessage] {
            items.enumerated().compactMap { decode($0.element, UInt64($0.offset)) }
        }
        func line(_ text: String) -> FramedItem { .line(Array(text.utf8)) }
        let stream = messages([
            line(#"{"return": 41}"#),                                          // undelimited, our id
            .delimiter, line(#"{"return": 7}"#),                               // delimited, foreign id
            .delimiter, line(#"{"error": {"class": "GenericError", "desc": "JSON parse error, stray"}}"#),
            .delimiter, line(#"{"return": {}, "id": 41}"#),                    // a command reply
            .delimiter, line(#"{"return": 41}"#),                              // the answer
        ])
        #expect(stream.count == 5)
        #expect(stream.map { GuestAgentClient.isSyncReply($0, toAnyOf: [40, 41]) } == [false, false, false, false, true])
    }

    /// 10 MiB of input-data in, the same 10 MiB captured back out (~14 MB base64 reply):
    /// both directions of large messages through the agent.
    @Test func execPassesInputDataAndCapturesLargeOutput() async throws {
        try await GuestAgentProcess.with { agent in
            let qga = try await GuestAgentClient.connect(path: agent.socketPath)
            defer { qga.close() }
            var input = [UInt8](repeating: 0, count: 10 << 20)
            input.withUnsafeMutableBytes { _ = cs_getrandomForTests($0) }
            let result = try await qga.exec(path: "/bin/cat", input: input, deadline: .now + .seconds(60))
            #expect(result.termination == .exited(code: 0))
            #expect(!result.standardOutputTruncated)
            #expect(result.standardOutput.count == input.count)
            #expect(result.standardOutput == input)
        }
    }

    /// §5.4-7: arguments and environment arrive byte-exact (quotes, backslashes, newlines).
    @Test func argumentsAndEnvironmentArriveExactly() async throws {
        try await GuestAgentProcess.with { agent in
            let qga = try await GuestAgentClient.connect(path: agent.socketPath)
            defer { qga.close() }
            let hostile = "a\"b\\c\nd,e $(x)"
            let result = try await qga.exec(path: "/bin/sh", arguments: ["-c", #"printf '%s|%s' "$1" "$FOO""#, "sh", hostile],
                                            environment: ["FOO": "bar \"baz\"", "PATH": "/usr/bin:/bin"])
            try result.requireSuccess("printf")
            #expect(result.standardOutputText == "\(hostile)|bar \"baz\"")
        }
    }

    /// Secrets go to stdin via input-data and come out intact (the trigger's contract).
    @Test func secretPayloadReachesStdin() async throws {
        try await GuestAgentProcess.with { agent in
            let qga = try await GuestAgentClient.connect(path: agent.socketPath)
            defer { qga.close() }
            let secrets = InternalSecrets.generate()
            let file = agent.directory.file("payload")
            let result = try await qga.exec(path: "/bin/sh", arguments: ["-c", "umask 077; cat > \"$0\"", file],
                                            input: secrets.payload, captureOutput: true)
            try result.requireSuccess("write payload")
            #expect(try POSIX.readFile(file) == secrets.payload)
        }
    }

    @Test func nonZeroExitIsReportedWithOutput() async throws {
        try await GuestAgentProcess.with { agent in
            let qga = try await GuestAgentClient.connect(path: agent.socketPath)
            defer { qga.close() }
            let result = try await qga.exec(path: "/bin/sh", arguments: ["-c", "echo out; echo err >&2; exit 3"])
            #expect(result.termination == .exited(code: 3))
            #expect(!result.isSuccess)
            #expect(result.standardOutputText == "out\n")
            #expect(result.standardErrorText == "err\n")
            let error = try #require(throws: QEMUControlError.self) { try result.requireSuccess("failing step") }
            #expect(error.code == .guestProcessFailed)
            #expect(error.message.contains("exit code 3"))
            #expect(error.message.contains("err"))
        }
    }

    /// §5.4-8: a process killed by a signal has no exit code and is not a success.
    @Test func processKilledBySignalIsNotSuccess() async throws {
        try await GuestAgentProcess.with { agent in
            let qga = try await GuestAgentClient.connect(path: agent.socketPath)
            defer { qga.close() }
            let result = try await qga.exec(path: "/bin/sh", arguments: ["-c", "kill -KILL $$"])
            #expect(result.termination == .signaled(signal: SIGKILL))
            #expect(!result.isSuccess)
            #expect(throws: QEMUControlError.self) { try result.requireSuccess("killed") }
        }
    }

    /// A status call times out while the agent is frozen (like a paused guest); the next
    /// call resynchronises, skips the late reply and gets its own answer.
    @Test func execStatusTimeoutThenResync() async throws {
        try await GuestAgentProcess.with { agent in
            let qga = try await GuestAgentClient.connect(path: agent.socketPath)
            defer { qga.close() }
            // Runs until told to finish: the agent forgets a process once it has
            // reported its exit, so the late status reply must still say "running".
            let release = agent.directory.file("release")
            let pid = try await qga.startExec(path: "/bin/sh", arguments: ["-c", "while [ ! -e \"$0\" ]; do sleep 0.01; done; exit 4", release])
            agent.send(SIGSTOP)
            let error = try await #require(throws: QEMUControlError.self) {
                try await qga.execStatus(pid: pid, deadline: .now + .milliseconds(150))
            }
            agent.send(SIGCONT)
            #expect(error.code == .timedOut)
            // The late guest-exec-status reply must not be mistaken for guest-info's.
            let info = try await qga.info(deadline: .now + .seconds(10))
            #expect(!info.supportedCommands.isEmpty)
            #expect(try await qga.execStatus(pid: pid).exited == false)
            try await TestShell.run("touch '\(release)'")
            let result = try await qga.waitForExit(pid: pid, deadline: .now + .seconds(10))
            #expect(result.termination == .exited(code: 4))
        }
    }

    @Test func waitForExitHonoursItsDeadline() async throws {
        try await GuestAgentProcess.with { agent in
            let qga = try await GuestAgentClient.connect(path: agent.socketPath)
            defer { qga.close() }
            let pid = try await qga.startExec(path: "/bin/sleep", arguments: ["5"])
            let started = ContinuousClock.now
            let error = try await #require(throws: QEMUControlError.self) {
                try await qga.waitForExit(pid: pid, deadline: .now + .milliseconds(300))
            }
            #expect(error.code == .timedOut)
            #expect(started.duration(to: .now) < .seconds(2))
            _ = try await qga.exec(path: "/bin/kill", arguments: ["-KILL", String(pid)])
        }
    }

    /// guest-set-time reaches the agent in both forms. The host's agent has it disabled
    /// (it would set the host clock as root), so the agent's own refusal comes back with
    /// its class and description — the host clock is never touched.
    @Test func setTimeReachesTheAgent() async throws {
        try await GuestAgentProcess.with { agent in
            let qga = try await GuestAgentClient.connect(path: agent.socketPath)
            defer { qga.close() }
            for nanoseconds in [Int64(1_795_955_106_123_456_789), nil] {
                let error = try await #require(throws: QEMUControlError.self) {
                    try await qga.setTime(nanosecondsSinceEpoch: nanoseconds)
                }
                #expect(error.code == .commandFailed)
                #expect(error.qemuClass == "CommandNotFound")
                #expect(error.qemuDescription?.contains("guest-set-time has been disabled") == true)
            }
        }
    }

    @Test func syncFailsClearlyWhenNoAgentAnswers() async throws {
        try await GuestAgentProcess.with { agent in
            let qga = try await GuestAgentClient.connect(path: agent.socketPath)
            defer { qga.close() }
            agent.send(SIGSTOP)
            defer { agent.send(SIGCONT) }
            let error = try await #require(throws: QEMUControlError.self) {
                try await qga.sync(deadline: .now + .milliseconds(200))
            }
            #expect(error.code == .timedOut)
            #expect(error.message.contains("qemu-guest-agent"))
        }
    }
}

import CSystem

/// Fills `buffer` from the kernel CSPRNG.
func cs_getrandomForTests(_ buffer: UnsafeMutableRawBufferPointer) -> Int32 {
    cs_getrandom(buffer.baseAddress, buffer.count)
}
