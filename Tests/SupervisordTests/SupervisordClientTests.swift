import StackCore
import Supervisord
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The client against a real `/usr/bin/supervisord`.
@Suite struct SupervisordClientTests {
    /// Like the container's stack-app: the main process starts a background child (the
    /// Node servers) and waits; it records `<child pid>` in `<name>.child.<own pid>`.
    static let spawnsBackgroundChild = """
        sleep 1000 &
        echo $! > "$PWD/$SUPERVISOR_PROCESS_NAME.child.$$.tmp"
        mv "$PWD/$SUPERVISOR_PROCESS_NAME.child.$$.tmp" "$PWD/$SUPERVISOR_PROCESS_NAME.child.$$"
        wait
        """

    static func groupStopped(_ name: String) -> SupervisordProgram {
        SupervisordProgram(name: name, script: spawnsBackgroundChild, stopWaitSeconds: 3, stopAsGroup: true, killAsGroup: true)
    }

    /// §2.4-14 §5.5-8 §5.4-4: restart replaces both programs and, thanks to
    /// stopasgroup/killasgroup, the old generation's background children are gone too;
    /// the call returns only once both are RUNNING again.
    @Test func restartReplacesProcessesAndTheirBackgroundChildren() async throws {
        try await SupervisordServer.with(programs: [Self.groupStopped("stack-app"), Self.groupStopped("cron-jobs")]) { server in
            let client = SupervisordClient(socketPath: server.socketPath, callTimeout: .seconds(10))
            let names = ["stack-app", "cron-jobs"]
            let before = try await client.waitUntilRunning(names, timeout: .seconds(10))
            var oldPIDs: [Int32] = []
            for process in before {
                let pid = try #require(process.pid)
                oldPIDs += [pid, try await childPID(of: pid, program: process.name, in: server.directory)]
            }

            let after = try await client.restart(names, timeout: .seconds(15))

            #expect(after.map(\.name) == names)
            #expect(after.allSatisfy { $0.state == .running && $0.startTime > 0 })
            for process in after {
                let pid = try #require(process.pid)
                #expect(!oldPIDs.contains(pid))
                let child = try await childPID(of: pid, program: process.name, in: server.directory)
                #expect(isAlive(child))
            }
            for old in oldPIDs {
                #expect(await eventually { !isAlive(old) }, "process \(old) of the previous generation is still alive")
            }
        }
    }

    /// The counterpart that shows why the group settings matter (§5.2): without
    /// stopasgroup a restart leaves the old background child running. (The test
    /// server's teardown still kills it: no process it started outlives it.)
    @Test func withoutGroupStopTheOldBackgroundChildSurvivesRestart() async throws {
        let program = SupervisordProgram(name: "leaky", script: Self.spawnsBackgroundChild, stopWaitSeconds: 3)
        let started = try await SupervisordServer.with(programs: [program]) { server in
            let client = SupervisordClient(socketPath: server.socketPath, callTimeout: .seconds(10))
            let before = try #require(try await client.waitUntilRunning(["leaky"], timeout: .seconds(10)).first?.pid)
            let oldChild = try await childPID(of: before, program: "leaky", in: server.directory)

            _ = try await client.restart(["leaky"], timeout: .seconds(15))

            #expect(isAlive(oldChild))
            let after = try #require(try await client.processInfo("leaky").pid)
            _ = try await childPID(of: after, program: "leaky", in: server.directory)
            let started = server.markedProcesses()
            #expect(started.contains(oldChild))
            return started
        }
        #expect(started.count >= 4)  // supervisord, the orphan, the new program and its child
        for pid in started { #expect(!isAlive(pid), "process \(pid) outlived the test supervisord") }
    }

    /// The test server passes a program's environment through.
    @Test func programEnvironmentReachesTheProgram() async throws {
        let program = SupervisordProgram(name: "env", script: "printf '%s' \"$GREETING\" > \"$PWD/greeting\"\nexec sleep 1000",
                                         environment: ["GREETING": "hello, 100% world"])
        try await SupervisordServer.with(programs: [program]) { server in
            _ = try await SupervisordClient(socketPath: server.socketPath).waitUntilRunning(["env"], timeout: .seconds(10))
            let path = Path.join(server.directory, "greeting")
            #expect(await eventually { POSIX.exists(path) })
            #expect(String(decoding: try POSIX.readFile(path), as: UTF8.self) == "hello, 100% world")
        }
    }

    /// Unknown names fail with supervisord's BAD_NAME fault before anything is stopped.
    @Test func restartWithAnUnknownNameFailsWithBadNameAndStopsNothing() async throws {
        try await SupervisordServer.with(programs: [Self.groupStopped("stack-app")]) { server in
            let client = SupervisordClient(socketPath: server.socketPath, callTimeout: .seconds(10))
            let pid = try await client.waitUntilRunning(["stack-app"], timeout: .seconds(10)).first?.pid

            let error = await #expect(throws: SupervisordError.self) {
                try await client.restart(["stack-app", "no-such-program"], timeout: .seconds(10))
            }
            #expect(error?.code == .fault)
            #expect(error?.faultCode == .badName)
            #expect(error?.faultString == "BAD_NAME: no-such-program")
            #expect(error?.message.contains("BAD_NAME: no-such-program") == true)
            #expect(try await client.processInfo("stack-app").pid == pid)
        }
    }

    /// Markup characters in a name travel escaped to supervisord and back unchanged
    /// (its fault string repeats the name).
    @Test func namesWithMarkupCharactersReachSupervisordIntact() async throws {
        try await SupervisordServer.with(programs: [Self.groupStopped("stack-app")]) { server in
            let client = SupervisordClient(socketPath: server.socketPath, callTimeout: .seconds(10))
            let name = "a<b>&c\"d'e</string>"
            let error = await #expect(throws: SupervisordError.self) { try await client.processInfo(name) }
            #expect(error?.faultCode == .badName)
            #expect(error?.faultString == "BAD_NAME: \(name)")
        }
    }

    /// §5.4-4: the wait is bounded; a program that keeps exiting (BACKOFF, restarted
    /// forever) ends it with a timeout naming the program and its state.
    @Test func waitUntilRunningTimesOutForAProgramThatKeepsExiting() async throws {
        let flaky = SupervisordProgram(name: "flaky", script: "exit 3", startSeconds: 1, startRetries: 1000)
        try await SupervisordServer.with(programs: [flaky]) { server in
            let client = SupervisordClient(socketPath: server.socketPath, callTimeout: .seconds(10))
            let started = ContinuousClock.now
            let error = await #expect(throws: SupervisordError.self) {
                try await client.waitUntilRunning(["flaky"], timeout: .milliseconds(1500))
            }
            let elapsed = ContinuousClock.now - started
            #expect(error?.code == .timedOut)
            #expect(error?.message.contains("flaky:flaky is") == true, "\(String(describing: error))")
            #expect(error.map { $0.message.contains("BACKOFF") || $0.message.contains("STARTING") } == true, "\(String(describing: error))")
            #expect(elapsed >= .milliseconds(1200) && elapsed < .seconds(10))
        }
    }

    /// A program supervisord gave up on (FATAL) fails the wait at once, with the reason.
    @Test func waitUntilRunningFailsPromptlyForAFatalProgram() async throws {
        let broken = SupervisordProgram(name: "broken", script: "exit 3", startSeconds: 1, startRetries: 0)
        try await SupervisordServer.with(programs: [broken]) { server in
            let client = SupervisordClient(socketPath: server.socketPath, callTimeout: .seconds(10))
            let started = ContinuousClock.now
            let error = await #expect(throws: SupervisordError.self) {
                try await client.waitUntilRunning(["broken"], timeout: .seconds(20))
            }
            #expect(error?.code == .programFailed)
            #expect(error?.message.contains("broken:broken is FATAL") == true, "\(String(describing: error))")
            #expect(ContinuousClock.now - started < .seconds(10))
        }
    }

    /// Starting a program that dies during `startsecs` reports supervisord's fault.
    @Test func restartOfAProgramThatCannotStartCarriesTheFault() async throws {
        let broken = SupervisordProgram(name: "broken", script: "exit 3", autostart: false, startSeconds: 1, startRetries: 0)
        try await SupervisordServer.with(programs: [broken]) { server in
            let client = SupervisordClient(socketPath: server.socketPath, callTimeout: .seconds(10))
            let error = await #expect(throws: SupervisordError.self) {
                try await client.restart(["broken"], timeout: .seconds(10))
            }
            #expect(error?.code == .fault)
            #expect(error?.faultCode == .abnormalTermination || error?.faultCode == .spawnError, "\(String(describing: error))")
        }
    }

    /// Stopping a stopped program is supervisord's NOT_RUNNING fault; restart tolerates
    /// it and simply starts the program.
    @Test func restartStartsAProgramThatWasNotRunning() async throws {
        let idle = SupervisordProgram(name: "idle", command: "/bin/sleep 1000", autostart: false, stopAsGroup: true, killAsGroup: true)
        try await SupervisordServer.with(programs: [idle]) { server in
            let client = SupervisordClient(socketPath: server.socketPath, callTimeout: .seconds(10))
            #expect(try await client.processInfo("idle").state == .stopped)
            let error = await #expect(throws: SupervisordError.self) { try await client.stopProcess("idle") }
            #expect(error?.faultCode == .notRunning)

            let after = try await client.restart(["idle"], timeout: .seconds(10))
            #expect(after.first?.state == .running)
            #expect(after.first?.pid.map(isAlive) == true)

            try await client.stopProcess("idle", wait: true)
            #expect(try await client.processInfo("idle").state == .stopped)
        }
    }

    @Test func reportsSupervisordStateAndAllProcesses() async throws {
        try await SupervisordServer.with(programs: [Self.groupStopped("stack-app"), Self.groupStopped("cron-jobs")]) { server in
            let client = SupervisordClient(socketPath: server.socketPath, callTimeout: .seconds(10))
            let state = try await client.state()
            #expect(state.isRunning)
            #expect(state.name == "RUNNING")
            _ = try await client.waitUntilRunning(["stack-app", "cron-jobs"], timeout: .seconds(10))
            let all = try await client.allProcessInfo()
            #expect(all.map(\.qualifiedName).sorted() == ["cron-jobs:cron-jobs", "stack-app:stack-app"])
            #expect(all.allSatisfy { $0.pid != nil && $0.statusDescription.hasPrefix("pid ") })
        }
    }

    /// A missing socket says which path and that supervisord may not be running.
    @Test func missingSocketNamesThePath() async throws {
        let path = "/tmp/svd-missing-\(getpid())/supervisor.sock"
        let client = SupervisordClient(socketPath: path, callTimeout: .seconds(2))
        let error = await #expect(throws: SupervisordError.self) { try await client.state() }
        #expect(error?.code == .socketUnavailable)
        #expect(error?.errno == ENOENT)
        #expect(error?.message.contains(path) == true)
        #expect(error?.message.contains("supervisord may not be running") == true)
    }

    @Test func restartOfNoProgramsDoesNothing() async throws {
        let client = SupervisordClient(socketPath: "/tmp/svd-unused/s.sock")
        #expect(try await client.restart([], timeout: .seconds(1)).isEmpty)
    }
}

// MARK: helpers

/// Live and not a zombie.
func isAlive(_ pid: Int32) -> Bool {
    guard kill(pid, 0) == 0 else { return false }
    guard let stat = try? POSIX.readFile("/proc/\(pid)/stat") else { return false }
    // The state letter follows the parenthesised command name.
    guard let close = stat.lastIndex(of: UInt8(ascii: ")")), close + 2 < stat.count else { return true }
    return stat[close + 2] != UInt8(ascii: "Z") && stat[close + 2] != UInt8(ascii: "X")
}

/// Polls `condition` from 10 ms with backoff until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    var delay = Duration.milliseconds(10)
    while !condition() {
        guard ContinuousClock.now < deadline else { return false }
        try? await Task.sleep(for: delay)
        delay = min(delay * 2, .milliseconds(200))
    }
    return true
}

/// The background child recorded by `spawnsBackgroundChild` for the process `pid`.
func childPID(of pid: Int32, program: String, in directory: String) async throws -> Int32 {
    let path = Path.join(directory, "\(program).child.\(pid)")
    #expect(await eventually { POSIX.exists(path) }, "\(path) was not written")
    let text = String(decoding: try POSIX.readFile(path), as: UTF8.self).filter { !$0.isWhitespace }
    return try #require(Int32(text))
}
