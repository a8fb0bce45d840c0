import StackCore
import StackProcess
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `Command.run` in the test process itself (no Reaper here: waitpid on its own pid only,
/// safe beside the other tests).
@Suite("Command.run cancellation and /proc parsing")
struct CommandRunTests {
    static let environment = ["PATH": Command.defaultSearchPath]

    /// Runs `script` (which must write its pid to `$1`, a FIFO), cancels the run once the
    /// pid arrived, and returns the pid, how long the cancelled run took to return, and
    /// what it threw.
    static func cancelRun(_ script: String, cancellationGrace: Duration) async throws -> (pid: pid_t, elapsed: Duration, error: (any Error)?) {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let announce = try fixture.fifo("announce")
        let command = Command("/bin/sh", arguments: ["-c", script, "sh", announce], environment: environment, processGroup: .new)
        let run = Task { try await command.run(cancellationGrace: cancellationGrace) }
        let pid = try #require(pid_t(try await fixture.readFIFO(announce)))
        let clock = ContinuousClock()
        let start = clock.now
        run.cancel()
        do {
            _ = try await run.value
            return (pid, clock.now - start, nil)
        } catch {
            return (pid, clock.now - start, error)
        }
    }

    /// Cancelling the task running a command (a migration during shutdown) stops the
    /// command's process group with SIGTERM and throws CancellationError once it is gone.
    @Test func cancellingRunStopsTheCommandPromptly() async throws {
        let (pid, elapsed, error) = try await Self.cancelRun("echo $$ > \"$1\"; exec sleep 1000", cancellationGrace: .seconds(60))
        #expect(error is CancellationError)
        #expect(elapsed < .seconds(20), "SIGTERM, not the 60 s grace, ended it")
        #expect(!isAlive(pid))
    }

    /// A command that ignores SIGTERM is killed once the cancellation grace has passed.
    @Test func cancellingRunEscalatesToSigkillForACommandIgnoringSigterm() async throws {
        let (pid, elapsed, error) = try await Self.cancelRun("trap '' TERM; echo $$ > \"$1\"; exec sleep 1000", cancellationGrace: .milliseconds(200))
        #expect(error is CancellationError)
        #expect(elapsed >= .milliseconds(200))
        #expect(elapsed < .seconds(30), "killed after the grace, not left to its 1000 s sleep")
        #expect(!isAlive(pid))
    }

    /// A timeout still reports `timedOut` (not a cancellation) and kills the command.
    @Test func timeoutStillKillsAndReportsTimedOut() async throws {
        let command = Command("/bin/sh", arguments: ["-c", "exec sleep 1000"], environment: Self.environment, processGroup: .new)
        await #expect(throws: ProcessError.self) {
            do {
                _ = try await command.run(timeout: .milliseconds(100))
            } catch let error as ProcessError {
                #expect(error.code == .timedOut)
                throw error
            }
        }
    }

    /// `comm` may contain spaces and parentheses; fields are read after the last `)`.
    @Test func processTableParsesStatLinesWithAwkwardNames() throws {
        let entry = try #require(ProcessTable.parse(stat: Array("4242 (we (ird) name) Z 1 4242 4242 0 -1".utf8)))
        #expect(entry.pid == 4242)
        #expect(entry.name == "we (ird) name")
        #expect(entry.isZombie)
        #expect(entry.parent == 1)
        #expect(entry.leadsGroup)
        #expect(entry.session == 4242)
        #expect(entry.startTime == nil, "the line ends before starttime")
        #expect(ProcessTable.parse(stat: Array("garbage".utf8)) == nil)
        // A full line: starttime is field 22 (the 20th after the name).
        let full = "77 (a) b) S 1 77 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 50 18446744073709551615"
        #expect(ProcessTable.parse(stat: Array(full.utf8))?.startTime == 123456)
    }

    /// Our own entry in the live /proc is found with the right parent.
    @Test func processTableSeesThisProcess() throws {
        let me = try #require(ProcessTable.entry(pid: getpid()))
        #expect(me.parent == getppid())
        #expect(ProcessTable.entries().contains { $0.pid == me.pid })
        // A child started now started after us (clock ticks after boot).
        let child = try Command("/bin/sleep", arguments: ["5"], environment: [:]).spawn()
        defer { child.send(SIGKILL); TestReaper.reapInBackground(child.pid) }
        let started = try #require(ProcessTable.entry(pid: child.pid)?.startTime)
        #expect(started >= (try #require(me.startTime)))
    }
}
