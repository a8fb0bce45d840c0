// Test harness: runs StackProcess's SignalSource, Reaper and Supervisor in a process
// of their own, the way `stack-entrypoint` will, so tests can signal it (signalling
// the test runner itself would be a bad idea) and run it as PID 1 under unshare.
import Logging
import StackCore
import StackProcess
#if canImport(Glibc)
import Glibc
#endif

let options: HarnessOptions
do {
    options = try HarnessOptions(Array(CommandLine.arguments.dropFirst()))
} catch {
    HarnessOutput.line("usage error: \(error)")
    exit(64)
}

// First thing, before any other thread exists: take over the signals.
StackLogging.bootstrap(prefix: "supervisor-harness", level: StackLogging.level(named: options.logLevel) ?? .info)
let logger = Logger(label: "supervisor-harness")
let signals: SignalSource
let reaper: Reaper
do {
    signals = try SignalSource.install(logger: logger)
    reaper = try Reaper(signals: signals, configuration: .init(becomeSubreaper: options.becomeSubreaper), logger: logger)
} catch {
    HarnessOutput.line("setup error: \(error)")
    exit(70)
}
HarnessOutput.line("harness:ready pid=\(getpid()) adopts-orphans=\(reaper.adoptsOrphans)")

if options.exitWithStdin {
    // The test keeps our stdin's write end: if the test process dies (crash, timeout),
    // EOF arrives and we shut down like on SIGTERM instead of leaking our children.
    BlockingCall.detach {
        var byte: UInt8 = 0
        while true {
            let n = read(0, &byte, 1)
            if n > 0 || (n < 0 && errno == EINTR) { continue }
            break
        }
        kill(getpid(), SIGTERM)
    }
}

let environment = ProcessEnvironment.current
func shell(_ script: String) -> Command {
    Command("/bin/sh", arguments: ["-c", script], environment: environment, processGroup: .new)
}

switch options.mode {
case .supervise:
    if let prepare = options.prepare {
        let step: @Sendable () async throws -> CommandOutput = {
            try await shell(prepare).run(cancellationGrace: .milliseconds(options.graceMilliseconds), waiter: reaper)
        }
        do {
            let output = options.prepareCancellable ? try await signals.cancellingOnShutdown(step) : try await step()
            HarnessOutput.line("prepare:\(output.status.shellCode) \(output.standardOutputText.split(separator: "\n").joined(separator: "|"))")
        } catch let error as ProcessError where error.code == .shutdownRequested {
            let signal = signals.shutdownSignal ?? .terminate
            HarnessOutput.line("result cause=shutdown-during-preparation exit-code=\(128 + signal.rawValue)")
            exit(128 + signal.rawValue)
        } catch {
            HarnessOutput.line("prepare failed: \(error)")
            exit(1)
        }
    }
    let configuration = Supervisor.Configuration(
        children: options.children.map { Supervisor.Child($0.name, shell($0.script)) },
        gracePeriod: .milliseconds(options.graceMilliseconds),
        killTimeout: .milliseconds(options.killTimeoutMilliseconds))
    let services = options.service.map { [SupervisedService($0, MarkerService(name: $0, fails: options.serviceFails), failureStopsSupervisor: true)] } ?? []
    let outcome = await Supervisor(configuration, signals: signals, reaper: reaper, logger: logger).run(services: services)
    let cause: String = switch outcome.cause {
    case .childExited(let name): "child-exited:\(name)"
    case .signal(let signal): "signal:\(signal.rawValue)"
    case .signalBeforeStart(let signal): "signal-before-start:\(signal.rawValue)"
    case .serviceFailed(let name): "service-failed:\(name)"
    }
    let first = outcome.firstExit.map { "\($0.name):\($0.status.shellCode)" } ?? "none"
    let leftovers = outcome.leftovers.map { "\($0.pid)" }.joined(separator: ",")
    HarnessOutput.line("result cause=\(cause) exit-code=\(outcome.exitCode) first=\(first) leftovers=\(leftovers)")
    exit(outcome.exitCode)

case .reapConcurrently:
    // Orphans: each `sh` forks a short sleeper and exits, so the sleeper is re-parented
    // to us and reaped as an unregistered child while the commands below still run.
    for _ in 0..<options.orphans {
        _ = try? await shell("sleep 0.05 & exit 0").run(waiter: reaper)
    }
    // A child started by code that knows nothing of the Reaper: `waitForExit()` must
    // still get its status (ChildProcess delegates to `Reaper.current`).
    let unregistered = try options.unregistered.map { try shell($0).spawn() }
    let results = await withTaskGroup(of: String.self) { group in
        for child in options.children {
            group.addTask {
                do {
                    // Names starting with "plain" use the default waiter, as library code would.
                    let output = child.name.hasPrefix("plain")
                        ? try await shell(child.script).run(timeout: .seconds(30))
                        : try await shell(child.script).run(timeout: .seconds(30), waiter: reaper)
                    return "command:\(child.name) status=\(output.status.shellCode) stdout=\(output.standardOutputText.split(separator: "\n").joined(separator: "|"))"
                } catch {
                    return "command:\(child.name) error=\(error)"
                }
            }
        }
        var lines: [String] = []
        for await line in group { lines.append(line) }
        return lines
    }
    for line in results.sorted() { HarnessOutput.line(line) }
    if let unregistered {
        // Asked only now, long after the Reaper reaped it as an unregistered child.
        do {
            HarnessOutput.line("unregistered status=\(try await unregistered.waitForExit().shellCode)")
        } catch {
            HarnessOutput.line("unregistered error=\(error)")
        }
    }
    let remaining = ProcessTable.children().filter { !$0.isZombie }
    let reaped = reaper.reapCount
    // Orphans still sleeping when the commands ended: wait for them (bounded).
    let deadline = ContinuousClock.now + .seconds(5)
    while true {
        let count = reaper.reapCount
        if ProcessTable.children().isEmpty || ContinuousClock.now >= deadline { break }
        await reaper.nextReap(after: count, until: deadline)
    }
    HarnessOutput.line("reaped total=\(reaper.reapCount) before-wait=\(reaped) live-at-end=\(remaining.count) zombies=\(ProcessTable.children().filter(\.isZombie).count)")
    exit(0)
}
