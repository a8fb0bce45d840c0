import Logging
import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs a fixed set of child processes as one unit, the way a good PID 1 (or a
/// supervisord program with stopasgroup/killasgroup) should:
///
/// * each child leads its own process group; shutdown signals received by us
///   (SIGTERM, SIGINT, SIGHUP, SIGQUIT) are forwarded to every group;
/// * when one child exits, the others' groups get SIGTERM, so no sibling is left
///   holding its port (§5.4-2);
/// * the shutdown is bounded: `gracePeriod` after it began, whatever still runs gets
///   SIGKILL — the children's groups and the descendants that left them;
/// * after the children, leftover descendants re-parented to us (double fork + setsid,
///   found by parent pid in /proc) get SIGTERM, then SIGKILL at the same deadline, and
///   are reaped — the Reaper must adopt orphans (PID 1 or subreaper) for them to be ours;
/// * in-process `Service`s run alongside and are cancelled once the children are gone.
///
/// Exit code (`Outcome.exitCode`): the shell code of the FIRST child to exit (exit code,
/// or 128 + signal). This holds when the shutdown came from a signal we received too:
/// the first child to exit is then one we sent the signal to, so a Node server that
/// exits cleanly on SIGTERM gives 0, and one that dies of it (Node's default) 143.
/// A shutdown signal that arrived before the children started gives 128 + signal (as
/// if a shell entrypoint had been killed by it), a child that could not be started
/// 127, a `SupervisedService` with `failureStopsSupervisor` that failed 1.
public struct Supervisor: Sendable {
    public struct Child: Sendable {
        public var name: String
        /// Started in a new process group unless it asks for a new session.
        public var command: Command

        public init(_ name: String, _ command: Command) {
            self.name = name
            self.command = command
        }
    }

    public struct Configuration: Sendable {
        public var children: [Child]
        /// From the start of the shutdown until SIGKILL (supervisord's stopwaitsecs is
        /// 10 s for stack-app: keep this below it so we kill, not supervisord).
        public var gracePeriod: Duration
        /// How long to wait for processes to vanish after SIGKILL before giving up on
        /// them (a process stuck in uninterruptible sleep) and returning anyway.
        public var killTimeout: Duration
        /// Signals passed on to every child's process group.
        public var forwardedSignals: Set<Signal>
        /// Signals that begin the shutdown (start the grace period).
        public var shutdownSignals: Set<Signal>

        public init(
            children: [Child],
            gracePeriod: Duration = .seconds(10),
            killTimeout: Duration = .seconds(2),
            forwardedSignals: Set<Signal> = Signal.shutdownRequests,
            shutdownSignals: Set<Signal> = Signal.shutdownRequests
        ) {
            self.children = children
            self.gracePeriod = gracePeriod
            self.killTimeout = killTimeout
            self.forwardedSignals = forwardedSignals
            self.shutdownSignals = shutdownSignals
        }
    }

    public struct ChildExit: Sendable, Equatable, CustomStringConvertible {
        public let name: String
        /// 0 when the child could not be started.
        public let pid: pid_t
        public let status: ExitStatus
        public var description: String { "\(name) (pid \(pid)): \(status)" }
    }

    public struct Outcome: Sendable {
        public enum Cause: Sendable, Equatable {
            /// A child exited (or could not be started) by itself.
            case childExited(String)
            /// We received a shutdown signal while the children ran.
            case signal(Signal)
            /// A shutdown signal arrived before the children were started; none was.
            case signalBeforeStart(Signal)
            /// A service with `failureStopsSupervisor` failed.
            case serviceFailed(String)
        }

        public let cause: Cause
        /// Every child's end, in the order they ended; the first decides the exit code.
        public let exits: [ChildExit]
        /// Descendants outside the children's groups that had to be signalled.
        public let leftovers: [ProcessTable.Entry]
        public let exitCode: Int32

        public var firstExit: ChildExit? { exits.first }
    }

    private enum Event: Sendable {
        case exited(Int, ExitStatus)
        case signal(Signal)
        case graceExpired
        case serviceEnded(Int, (any Error)?)
    }

    public let configuration: Configuration
    private let signals: SignalSource
    private let reaper: Reaper
    private let logger: Logger

    public init(_ configuration: Configuration, signals: SignalSource, reaper: Reaper, logger: Logger) {
        self.configuration = configuration
        self.signals = signals
        self.reaper = reaper
        self.logger = logger
    }

    /// Starts the children and services, and returns when the children and every
    /// leftover descendant are gone (bounded by `gracePeriod` + `killTimeout` from the
    /// start of the shutdown) and the services have stopped.
    public func run(services: [SupervisedService] = []) async -> Outcome {
        // Subscribe before looking at shutdownSignal, so no signal falls in between.
        let received = signals.subscribe()
        if let early = signals.shutdownSignal {
            logger.info("\(early) received before the servers started; not starting them")
            return Outcome(cause: .signalBeforeStart(early), exits: [], leftovers: [], exitCode: 128 + early.rawValue)
        }

        var started: [Int: ChildProcess] = [:]
        var exits: [ChildExit] = []
        for (index, child) in configuration.children.enumerated() {
            var command = child.command
            if command.processGroup == .inherit { command.processGroup = .new }
            do {
                let process = try reaper.spawn(command)
                started[index] = process
                logger.info("started \(child.name)", metadata: ["pid": "\(process.pid)"])
            } catch {
                logger.error("cannot start \(child.name): \(error)")
                exits.append(ChildExit(name: child.name, pid: 0, status: .exited(127)))
                break
            }
        }
        let groups = started.values.map(\.pid).sorted()
        let (events, sink) = AsyncStream.makeStream(of: Event.self)

        return await withTaskGroup(of: Void.self) { group in
            for (index, process) in started {
                group.addTask { [reaper, logger] in
                    do {
                        sink.yield(.exited(index, try await reaper.waitForExit(process)))
                    } catch {
                        logger.error("lost track of pid \(process.pid): \(error)")
                        sink.yield(.exited(index, .exited(127)))
                    }
                }
            }
            group.addTask {
                for await signal in received { sink.yield(.signal(signal)) }
            }
            for (index, entry) in services.enumerated() {
                group.addTask {
                    do {
                        try await entry.service.run()
                        sink.yield(.serviceEnded(index, nil))
                    } catch {
                        sink.yield(.serviceEnded(index, error))
                    }
                }
            }

            var running = started
            var cause: Outcome.Cause?
            var shutdownStart: ContinuousClock.Instant?
            var signalledLeftovers: [pid_t: ProcessTable.Entry] = [:]

            func signalGroups(_ signal: Signal, onlyRunning: Bool) {
                let targets = onlyRunning ? running.values.map(\.pid).sorted() : groups
                for pgid in targets { _ = kill(-pgid, signal.rawValue) }
            }
            func signalLeftovers(_ signal: Signal) {
                for entry in leftoverDescendants() where !entry.isZombie {
                    Supervisor.send(signal, to: entry)
                    signalledLeftovers[entry.pid] = entry
                }
            }
            func beginShutdown(_ reason: Outcome.Cause, alreadySent: Signal?) {
                guard shutdownStart == nil else { return }
                cause = reason
                shutdownStart = .now
                if alreadySent != .terminate { signalGroups(.terminate, onlyRunning: false) }
                signalLeftovers(.terminate)
                let grace = configuration.gracePeriod
                group.addTask {
                    try? await Task.sleep(for: grace)
                    if !Task.isCancelled { sink.yield(.graceExpired) }
                }
            }

            if let failed = exits.first {
                beginShutdown(.childExited(failed.name), alreadySent: nil)
            }
            if !running.isEmpty {
                eventLoop: for await event in events {
                    switch event {
                    case .exited(let index, let status):
                        let name = configuration.children[index].name
                        let pid = running.removeValue(forKey: index)?.pid ?? 0
                        exits.append(ChildExit(name: name, pid: pid, status: status))
                        if shutdownStart == nil {
                            logger.info("\(name) ended (\(status)); stopping the others", metadata: ["pid": "\(pid)"])
                            beginShutdown(.childExited(name), alreadySent: nil)
                        } else {
                            logger.info("\(name) ended (\(status))", metadata: ["pid": "\(pid)"])
                        }
                        if running.isEmpty { break eventLoop }
                    case .signal(let signal):
                        if configuration.forwardedSignals.contains(signal) {
                            logger.info("received \(signal); forwarding it to \(running.count) process group(s)")
                            signalGroups(signal, onlyRunning: shutdownStart != nil)
                        }
                        if configuration.shutdownSignals.contains(signal) {
                            beginShutdown(.signal(signal), alreadySent: configuration.forwardedSignals.contains(signal) ? signal : nil)
                        }
                    case .graceExpired:
                        let names = running.keys.sorted().map { configuration.children[$0].name }
                        logger.warning("grace period of \(configuration.gracePeriod) expired; sending SIGKILL", metadata: ["running": "\(names)"])
                        signalGroups(.kill, onlyRunning: false)
                        signalLeftovers(.kill)
                    case .serviceEnded(let index, let error):
                        let entry = services[index]
                        guard let error else {
                            logger.info("service \(entry.name) ended")
                            continue
                        }
                        logger.error("service \(entry.name) failed: \(error)")
                        if entry.failureStopsSupervisor {
                            beginShutdown(.serviceFailed(entry.name), alreadySent: nil)
                        }
                    }
                }
            }

            let leftovers = await stopLeftovers(
                termDeadline: (shutdownStart ?? .now) + configuration.gracePeriod,
                alreadySignalled: signalledLeftovers)
            // Services stop last: a child may still have used them while shutting down.
            group.cancelAll()
            sink.finish()

            let outcome = Outcome(
                cause: cause ?? .childExited(exits.first?.name ?? ""),
                exits: exits,
                leftovers: leftovers,
                exitCode: Supervisor.exitCode(cause: cause, firstExit: exits.first))
            logger.info("all children ended; exit code \(outcome.exitCode)", metadata: [
                "first": "\(outcome.firstExit.map(\.description) ?? "none")",
                "leftovers": "\(leftovers.count)",
            ])
            return outcome
        }
    }

    static func exitCode(cause: Outcome.Cause?, firstExit: ChildExit?) -> Int32 {
        switch cause {
        case .signalBeforeStart(let signal): 128 + signal.rawValue
        case .serviceFailed: 1
        default: firstExit?.status.shellCode ?? 0
        }
    }

    /// Our children that nobody registered with the Reaper: descendants re-parented to
    /// us after their parent died (or that daemonized), zombies included.
    private func leftoverDescendants() -> [ProcessTable.Entry] {
        guard ProcessTable.callerHasChildren else { return [] }
        return ProcessTable.children(of: getpid()).filter { !reaper.isRegistered($0.pid) }
    }

    /// SIGTERM to each leftover until `termDeadline`, SIGKILL after it, until none is
    /// left (each reap wakes us: a dying process may hand its own children to us) or
    /// `killTimeout` after the deadline.
    private func stopLeftovers(termDeadline: ContinuousClock.Instant, alreadySignalled: [pid_t: ProcessTable.Entry]) async -> [ProcessTable.Entry] {
        let giveUp = termDeadline + configuration.killTimeout
        var signalled = alreadySignalled
        var terminated = Set(alreadySignalled.keys)
        var killed = Set<pid_t>()
        while true {
            let reapsSoFar = reaper.reapCount
            let leftovers = leftoverDescendants()
            if leftovers.isEmpty { break }
            let now = ContinuousClock.now
            for entry in leftovers where !entry.isZombie {
                if now >= termDeadline {
                    if killed.insert(entry.pid).inserted { Supervisor.send(.kill, to: entry) }
                } else if terminated.insert(entry.pid).inserted {
                    logger.info("stopping leftover descendant \(entry)")
                    Supervisor.send(.terminate, to: entry)
                }
                if signalled[entry.pid] == nil { signalled[entry.pid] = entry }
            }
            if now >= giveUp {
                logger.warning("leftover descendants still present after SIGKILL; giving up on them", metadata: ["processes": "\(leftovers)"])
                break
            }
            await reaper.nextReap(after: reapsSoFar, until: now < termDeadline ? termDeadline : giveUp)
        }
        return signalled.values.sorted { $0.pid < $1.pid }
    }

    private static func send(_ signal: Signal, to entry: ProcessTable.Entry) {
        _ = kill(entry.pid, signal.rawValue)
        if entry.leadsGroup { _ = kill(-entry.pid, signal.rawValue) }
    }
}
