import StackCore
import StackProcess
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Each test runs `supervisor-harness` (SignalSource + Reaper + Supervisor, as
/// `stack-entrypoint` will) in its own process over `sh` / `node` children, and signals
/// that process, never the test runner.
@Suite("Supervisor (separate harness process)")
struct SupervisorTests {
    /// A shell child that reports SIGTERM on stdout and then exits with `exitCode`. It
    /// waits by opening `hold`, a FIFO nobody writes to, inside the shell itself: a
    /// trapped signal interrupts that open at once. (Waiting on a forked `sleep` would
    /// race: a SIGTERM that hits the fork before its exec runs the inherited trap there
    /// and is lost, leaving a stray `sleep` until the grace period ends.)
    static func trappingChild(_ name: String, exitCode: Int32 = 0, hold: String, before: String = "") -> String {
        """
        trap 'echo \(name):TERM; exit \(exitCode)' TERM
        \(before)
        echo \(name):ready
        { read line < \(hold); } 2>/dev/null
        """
    }

    /// §5.4-1: SIGTERM reaches both children (their TERM handlers run), and the exit
    /// code is the first child's: here the shell child exits 7 at once on TERM while the
    /// Node child takes 300 ms to exit 0.
    @Test func sigtermIsForwardedToBothChildrenAndFirstExitDecidesTheCode() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let hold = try fixture.fifo("hold")
        let node = try fixture.file("b.js", """
            process.on("SIGTERM", () => { console.log("b:TERM"); setTimeout(() => process.exit(0), 300) });
            console.log("b:ready");
            setInterval(() => {}, 1000);
            """)
        try await HarnessProcess.with([
            "supervise", "--grace-ms", "5000",
            "--child", "a=\(Self.trappingChild("a", exitCode: 7, hold: hold))",
            "--child", "b=exec node \(node)",
        ]) { harness in
            _ = try await harness.output.line(containing: "a:ready")
            _ = try await harness.output.line(containing: "b:ready")
            try harness.send(SIGTERM)
            let status = try await harness.waitForExit()
            #expect(harness.output.lines.contains("a:TERM"))
            #expect(harness.output.lines.contains("b:TERM"))
            let result = try await harness.result()
            #expect(result["cause"] == "signal:15")
            #expect(result["first"] == "a:7")
            #expect(status == .exited(7))
        }
    }

    /// §5.4-1: Node servers without a SIGTERM handler (the real backend/dashboard today)
    /// die of the forwarded SIGTERM, so the entrypoint exits 143 = 128 + SIGTERM.
    @Test func sigtermToDefaultNodeServersExitsWith143() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let server = try fixture.file("server.js", """
            require("http").createServer().listen(0, () => console.log(process.argv[2] + ":listening"));
            """)
        try await HarnessProcess.with([
            "supervise", "--grace-ms", "5000",
            "--child", "backend=exec node \(server) backend",
            "--child", "dashboard=exec node \(server) dashboard",
        ]) { harness in
            _ = try await harness.output.line(containing: "backend:listening")
            _ = try await harness.output.line(containing: "dashboard:listening")
            try harness.send(SIGTERM)
            let status = try await harness.waitForExit()
            #expect(status == .exited(143))
            #expect(harness.log.lines.filter { $0.contains("ended (signal 15)") }.count == 2)
            #expect(try await harness.result()["exit-code"] == "143")
        }
    }

    /// §5.4-2, §1.4-33: when one child crashes (exit 3) the sibling gets SIGTERM (its
    /// handler runs) and the entrypoint exits 3.
    @Test func crashingChildStopsItsSiblingAndExitCodeIsTheCrash() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let hold = try fixture.fifo("hold")
        let go = try fixture.fifo("go")
        try await HarnessProcess.with([
            "supervise", "--grace-ms", "5000",
            "--child", "a=read line < \(go); echo a:crash; exit 3",
            "--child", "b=\(Self.trappingChild("b", hold: hold, before: "echo go > \(go)"))",
        ]) { harness in
            let status = try await harness.waitForExit()
            #expect(status == .exited(3))
            let lines = harness.output.lines
            #expect(lines.contains("b:TERM"))
            #expect((lines.firstIndex(of: "a:crash") ?? .max) < (lines.firstIndex(of: "b:TERM") ?? -1))
            let result = try await harness.result()
            #expect(result["cause"] == "child-exited:a")
            #expect(result["first"] == "a:3")
        }
    }

    /// §5.4-2 with supervisord's killasgroup semantics: a sibling that ignores SIGTERM is
    /// killed with SIGKILL once the (test-short) grace period has passed.
    @Test func siblingIgnoringSigtermIsKilledAfterTheGracePeriod() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let go = try fixture.fifo("go")
        try await HarnessProcess.with([
            "supervise", "--grace-ms", "300",
            "--child", "a=read line < \(go); exit 3",
            "--child", "b=trap '' TERM; echo b:pid:$$; echo go > \(go); exec sleep 1000",
        ]) { harness in
            let pidLine = try await harness.output.line(containing: "b:pid:")
            let siblingPID = try #require(pid_t(pidLine.dropFirst("b:pid:".count)))
            let clock = ContinuousClock()
            let start = clock.now
            let status = try await harness.waitForExit()
            let elapsed = clock.now - start
            #expect(status == .exited(3))
            #expect(harness.log.lines.contains { $0.contains("grace period") && $0.contains("SIGKILL") })
            #expect(harness.log.lines.contains { $0.contains("b ended (signal 9)") })
            #expect(elapsed < .seconds(30), "SIGKILL after 300 ms, not a hang")
            #expect(!isAlive(siblingPID))
        }
    }

    /// A grandchild that daemonized (double fork + setsid, so it left the child's process
    /// group and session) and ignores SIGTERM is still found through /proc (re-parented
    /// to the harness as subreaper), SIGKILLed after the grace period and reaped.
    @Test func daemonizedGrandchildIsKilledAndReapedAfterShutdown() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let hold = try fixture.fifo("hold")
        let daemonize = "( setsid sh -c 'trap \"\" TERM; echo daemon:$$; exec sleep 1000' & )"
        try await HarnessProcess.with([
            "supervise", "--grace-ms", "300", "--log-level", "debug",
            "--child", "c=\(Self.trappingChild("c", hold: hold, before: daemonize))",
        ]) { harness in
            let daemonLine = try await harness.output.line(containing: "daemon:")
            let daemonPID = try #require(pid_t(daemonLine.dropFirst("daemon:".count)))
            _ = try await harness.output.line(containing: "c:ready")
            let harnessPID = harness.process.pid
            // c:ready comes after the intermediate subshell exited: the daemon is ours now.
            let daemon = try #require(ProcessTable.entry(pid: daemonPID))
            #expect(daemon.session == daemonPID, "the daemon leads its own session")
            #expect(daemon.parent == harnessPID, "re-parented to the subreaper")

            try harness.send(SIGTERM)
            let status = try await harness.waitForExit()
            #expect(status == .exited(0))
            let result = try await harness.result()
            #expect(result["leftovers"]?.split(separator: ",").contains("\(daemonPID)") == true)
            #expect(harness.log.lines.contains { $0.contains("reaped orphan") && $0.contains("pid=\(daemonPID) ") })
            #expect(ProcessTable.entry(pid: daemonPID) == nil, "gone from /proc: killed and reaped")
        }
    }

    /// A child killed by SIGKILL makes the exit code 137 (128 + 9), like a shell.
    @Test func childKilledBySignal9GivesExitCode137() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let hold = try fixture.fifo("hold")
        let go = try fixture.fifo("go")
        try await HarnessProcess.with([
            "supervise", "--grace-ms", "5000",
            "--child", "a=read line < \(go); kill -9 $$",
            "--child", "b=\(Self.trappingChild("b", hold: hold, before: "echo go > \(go)"))",
        ]) { harness in
            let status = try await harness.waitForExit()
            #expect(status == .exited(137))
            #expect(try await harness.result()["first"] == "a:137")
            #expect(harness.output.lines.contains("b:TERM"))
        }
    }

    /// SIGTERM while a preparation command (migrations) runs: the command's group is
    /// stopped, no child is started, and the harness exits 143 at once (the grace period
    /// is 5 s, so promptness does not come from a kill timeout).
    @Test func sigtermDuringPreparationStopsItAndExitsPromptly() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let hold = try fixture.fifo("hold")
        let announce = try fixture.fifo("announce")
        try await HarnessProcess.with([
            "supervise", "--grace-ms", "60000",
            "--prepare", "echo $$ > \(announce); exec sleep 1000",
            "--child", "a=\(Self.trappingChild("a", hold: hold))",
        ]) { harness in
            let preparePID = try #require(pid_t(try await fixture.readFIFO(announce)))
            #expect(isAlive(preparePID))
            let clock = ContinuousClock()
            let start = clock.now
            try harness.send(SIGTERM)
            let status = try await harness.waitForExit()
            #expect(clock.now - start < .seconds(20), "the signal, not the 60 s grace, ended it")
            #expect(status == .exited(143))
            #expect(try await harness.result()["cause"] == "shutdown-during-preparation")
            #expect(!harness.output.lines.contains("a:ready"))
            #expect(!isAlive(preparePID))
        }
    }

    /// A SIGTERM that arrives while an uncancellable step runs is remembered: the
    /// supervisor then starts nothing and exits 143.
    @Test func sigtermBeforeChildrenStartIsNotLost() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let hold = try fixture.fifo("hold")
        let announce = try fixture.fifo("announce")
        let proceed = try fixture.fifo("proceed")
        try await HarnessProcess.with([
            "supervise", "--grace-ms", "5000", "--prepare-uncancellable",
            "--prepare", "echo ready > \(announce); read line < \(proceed)",
            "--child", "a=\(Self.trappingChild("a", hold: hold))",
        ]) { harness in
            _ = try await fixture.readFIFO(announce)
            try harness.send(SIGTERM)
            try await fixture.writeFIFO(proceed, "go")
            let status = try await harness.waitForExit()
            #expect(status == .exited(143))
            #expect(try await harness.result()["cause"] == "signal-before-start:15")
            #expect(!harness.log.lines.contains { $0.contains("started a") })
        }
    }

    /// In-process services run beside the children and are cancelled after the children
    /// have stopped.
    @Test func servicesRunAlongsideAndStopAfterTheChildren() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let hold = try fixture.fifo("hold")
        try await HarnessProcess.with([
            "supervise", "--grace-ms", "5000", "--service", "forwarder",
            "--child", "a=\(Self.trappingChild("a", hold: hold))",
        ]) { harness in
            _ = try await harness.output.line(containing: "service:forwarder:started")
            _ = try await harness.output.line(containing: "a:ready")
            try harness.send(SIGTERM)
            let status = try await harness.waitForExit()
            #expect(status == .exited(0))
            let lines = harness.output.lines
            let stopped = try #require(lines.firstIndex(of: "service:forwarder:stopped"))
            #expect(try #require(lines.firstIndex(of: "a:TERM")) < stopped)
        }
    }

    /// A failing service marked `failureStopsSupervisor` stops the children (a child
    /// that only ends when signalled) and makes the exit code 1, not the child's 143.
    @Test func failingCriticalServiceStopsChildrenWithExitCode1() async throws {
        try await HarnessProcess.with([
            "supervise", "--grace-ms", "5000", "--service", "forwarder", "--service-fails",
            "--child", "a=exec sleep 1000",
        ]) { harness in
            let status = try await harness.waitForExit()
            #expect(status == .exited(1))
            let result = try await harness.result()
            #expect(result["cause"] == "service-failed:forwarder")
            #expect(result["first"] == "a:143")
        }
    }

    /// The Reaper owns waitpid(-1) yet every concurrent command gets its own status and
    /// output, while orphans are reaped in between; a command run with the default
    /// waiter and a child spawned without the Reaper (plain `spawn` + `waitForExit`) get
    /// theirs through `Reaper.current`.
    @Test func reaperHandsEachStatusToItsOwner() async throws {
        try await HarnessProcess.with([
            "reap-concurrently", "--orphans", "3", "--log-level", "debug",
            "--unregistered", "exit 4",
            "--command", "slow=sleep 0.3; echo A; exit 7",
            "--command", "fast=echo B; exit 9",
            "--command", "killed=kill -9 $$",
            "--command", "plain=sleep 0.1; echo P; exit 5",
        ]) { harness in
            let status = try await harness.waitForExit()
            #expect(status == .exited(0))
            let lines = harness.output.lines
            #expect(lines.contains("command:slow status=7 stdout=A"))
            #expect(lines.contains("command:fast status=9 stdout=B"))
            #expect(lines.contains("command:killed status=137 stdout="))
            #expect(lines.contains("command:plain status=5 stdout=P"))
            #expect(lines.contains("unregistered status=4"))
            #expect(harness.log.lines.filter { $0.contains("reaped orphan") }.count >= 3)
            let summary = try #require(lines.first { $0.hasPrefix("reaped ") })
            #expect(summary.hasSuffix("zombies=0"))
        }
    }

    /// Whether this machine can make a PID namespace (root and a working unshare).
    static func unshareUnavailableReason() async -> String? {
        guard getuid() == 0 else { return "needs root for unshare --pid (uid \(getuid()))" }
        guard let probe = try? await Command("/usr/bin/unshare", arguments: ["--pid", "--fork", "--mount-proc", "true"],
                                             environment: ["PATH": Command.defaultSearchPath]).run(timeout: .seconds(10))
        else { return "/usr/bin/unshare cannot be run" }
        guard probe.status.isSuccess else { return "unshare --pid --fork --mount-proc failed: \(probe.standardErrorText)" }
        return nil
    }

    /// §5.4-1 as PID 1 (the server image's ENTRYPOINT): a SIGTERM sent from the parent
    /// PID namespace is only delivered to a namespace init that installed a handler; it
    /// must stop both children. Orphans re-parented to PID 1 are reaped (no zombies).
    @Test func asPID1SigtermFromOutsideStopsChildrenAndOrphansAreReaped() async throws {
        if let reason = await Self.unshareUnavailableReason() { try Test.cancel("skipped: \(reason)") }
        let fixture = try Fixture()
        defer { fixture.remove() }
        let hold = try fixture.fifo("hold")
        let orphans = """
            for i in 1 2 3 4 5; do sh -c 'sleep 0.05 &'; done
            """
        try await HarnessProcess.with([
            "supervise", "--grace-ms", "5000", "--log-level", "debug",
            "--child", "a=\(Self.trappingChild("a", exitCode: 7, hold: hold))",
            "--child", "o=\(Self.trappingChild("o", exitCode: 7, hold: hold, before: orphans))",
        ], pidNamespace: true) { harness in
            #expect(try await harness.output.line(containing: "harness:ready").contains("pid=1 "))
            _ = try await harness.output.line(containing: "a:ready")
            _ = try await harness.output.line(containing: "o:ready")
            _ = try await harness.log.lines(count: 5, timeout: .seconds(10)) { $0.contains("reaped orphan") }
            let init1 = try harness.harnessPID()
            let zombies = ProcessTable.children(of: init1).filter(\.isZombie)
            #expect(zombies.isEmpty, "zombies under PID 1: \(zombies)")

            try harness.send(SIGTERM, pidNamespace: true)
            let status = try await harness.waitForExit()
            #expect(harness.output.lines.contains("a:TERM"))
            #expect(harness.output.lines.contains("o:TERM"))
            #expect(try await harness.result()["cause"] == "signal:15")
            #expect(status == .exited(7))
        }
    }
}
