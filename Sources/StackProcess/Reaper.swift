import CSystem
import Logging
import StackCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's only caller of `waitpid(-1)`.
///
/// As PID 1 or a child subreaper we inherit every orphaned descendant and must reap
/// them, but a blanket `waitpid(-1)` would steal the statuses other code waits for. So
/// the Reaper owns all waiting: children are started through `spawn(_:)` (registered
/// before the lock that reaping also takes is released, so no exit can slip past
/// unclaimed), each status goes to whoever waits for that pid, and anything else
/// (re-parented orphans) is reaped and logged at debug.
///
/// Once created it is `Reaper.current`, and `ChildProcess.waitForExit()`,
/// `exitStatusIfEnded()` and `Command.run`'s default waiter go through it, so code that
/// knows nothing about it stays correct. Raw `waitpid` calls elsewhere would not.
public final class Reaper: ProcessWaiter, Sendable {
    public struct Configuration: Sendable {
        /// Become a child subreaper (`PR_SET_CHILD_SUBREAPER`) unless we are PID 1, so
        /// descendants that daemonize (double fork, setsid) are re-parented to us and can
        /// still be found and stopped. Under supervisord this is what keeps a daemonized
        /// grandchild from outliving `stack-app`.
        public var becomeSubreaper: Bool
        /// How many statuses of unregistered children are kept for a late `wait(for:)`.
        public var unclaimedLimit: Int

        public init(becomeSubreaper: Bool = true, unclaimedLimit: Int = 256) {
            self.becomeSubreaper = becomeSubreaper
            self.unclaimedLimit = unclaimedLimit
        }
    }

    private struct Registration {
        var status: ExitStatus?
        var waiters: [CheckedContinuation<ExitStatus, any Error>] = []
    }

    private struct State {
        var registered: [pid_t: Registration] = [:]
        /// Statuses nobody registered for, oldest first (orphans, or children started
        /// without the Reaper whose owner may still ask).
        var unclaimed: [(pid: pid_t, status: ExitStatus)] = []
        var reapCount: UInt64 = 0
        var reapWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiterID = 0
    }

    private static let active = Mutex<Reaper?>(nil)

    /// The process's Reaper, once one has been created.
    public static var current: Reaper? { active.withLock { $0 } }

    public let configuration: Configuration
    /// `true` when orphaned descendants are re-parented to us (PID 1 or subreaper).
    public let adoptsOrphans: Bool
    private let logger: Logger
    private let state = Mutex(State())

    /// Attaches to `signals` (which must include SIGCHLD) and reaps whatever already exited.
    public init(signals: SignalSource, configuration: Configuration = Configuration(), logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        var adopts = getpid() == 1
        if !adopts && configuration.becomeSubreaper {
            let rc = cs_set_child_subreaper()
            if rc < 0 {
                logger.warning("cannot become a child subreaper; daemonized descendants will escape cleanup", metadata: ["errno": "\(-rc)"])
            } else {
                adopts = true
            }
        }
        adoptsOrphans = adopts
        try signals.attachChildExitHandler { [weak self] in self?.reapAvailable() }
        Reaper.active.withLock { $0 = self }
        reapAvailable()
    }

    /// Starts `command` and registers its pid in one step, so its status is kept for
    /// `waitForExit` even if it exits at once.
    public func spawn(_ command: Command) throws -> ChildProcess {
        try state.withLock { state in
            let child = try command.spawn()
            if let stale = state.registered[child.pid] {
                logger.warning("pid \(child.pid) reused while its previous status was unclaimed", metadata: ["status": "\(stale.status.map { "\($0)" } ?? "none")"])
            }
            state.registered[child.pid] = Registration()
            state.unclaimed.removeAll { $0.pid == child.pid }
            return child
        }
    }

    public func waitForExit(_ child: ChildProcess) async throws -> ExitStatus {
        try await wait(for: child.pid)
    }

    /// The exit status of our child `pid`: registered by `spawn`, or started some other
    /// way (its status is taken from the unclaimed statuses, or it is registered now).
    /// Several tasks may wait for the same pid. Not cancellable (see `ProcessWaiter`).
    /// Throws `notAChild` for a pid that is not our child and has no kept status.
    public func wait(for pid: pid_t) async throws -> ExitStatus {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ExitStatus, any Error>) in
            enum Lookup { case ready(ExitStatus), waiting, notAChild }
            let lookup: Lookup = state.withLock { state in
                if var registration = state.registered[pid] {
                    if let status = registration.status {
                        state.registered[pid] = nil
                        return .ready(status)
                    }
                    registration.waiters.append(continuation)
                    state.registered[pid] = registration
                    return .waiting
                }
                if let index = state.unclaimed.firstIndex(where: { $0.pid == pid }) {
                    return .ready(state.unclaimed.remove(at: index).status)
                }
                // Still our child (alive or a zombie not yet reaped: reaping takes this
                // lock, so it cannot happen between this check and the registration).
                var info = siginfo_t()
                if waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 {
                    state.registered[pid] = Registration(waiters: [continuation])
                    return .waiting
                }
                return .notAChild
            }
            switch lookup {
            case .ready(let status): continuation.resume(returning: status)
            case .waiting: break
            case .notAChild:
                continuation.resume(throwing: ProcessError(.notAChild, "pid \(pid) is not a child of this process and no exit status is kept for it"))
            }
        }
    }

    /// The status of our child `pid` if it has ended (collecting it), `nil` while it
    /// runs; throws `notAChild` like `wait(for:)`.
    public func statusIfEnded(_ pid: pid_t) throws -> ExitStatus? {
        enum Lookup { case ended(ExitStatus), running, notAChild }
        let lookup: Lookup = state.withLock { state in
            if let registration = state.registered[pid] {
                guard let status = registration.status else { return .running }
                if registration.waiters.isEmpty { state.registered[pid] = nil }
                return .ended(status)
            }
            if let index = state.unclaimed.firstIndex(where: { $0.pid == pid }) {
                return .ended(state.unclaimed.remove(at: index).status)
            }
            var info = siginfo_t()
            return waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 ? .running : .notAChild
        }
        switch lookup {
        case .ended(let status): return status
        case .running: return nil
        case .notAChild: throw ProcessError(.notAChild, "pid \(pid) is not a child of this process and no exit status is kept for it")
        }
    }

    /// `true` when `pid` was registered and its owner has not collected its status yet.
    public func isRegistered(_ pid: pid_t) -> Bool {
        state.withLock { $0.registered[pid] != nil }
    }

    /// How many processes have been reaped so far; pass it to `nextReap(after:until:)`.
    public var reapCount: UInt64 { state.withLock { $0.reapCount } }

    /// Returns once a process has been reaped after `count` was read, at `deadline`, or
    /// when the task is cancelled, whichever comes first.
    public func nextReap(after count: UInt64, until deadline: ContinuousClock.Instant) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.nextReap(after: count) }
            group.addTask { try? await Task.sleep(until: deadline, clock: .continuous) }
            await group.next()
            group.cancelAll()
        }
    }

    private func nextReap(after count: UInt64) async {
        let id = state.withLock { state in
            defer { state.nextWaiterID += 1 }
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state in
                    if state.reapCount > count || Task.isCancelled { return true }
                    state.reapWaiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.reapWaiters.removeValue(forKey: id) }?.resume()
        }
    }

    /// Reaps every exited child (SIGCHLD coalesces, so one signal may stand for many).
    /// Runs on the signal thread; `waitpid` happens under the lock so that `wait(for:)`
    /// and `spawn` see either "still a child" or "status recorded", never neither.
    private func reapAvailable() {
        var resumptions: [(CheckedContinuation<ExitStatus, any Error>, ExitStatus)] = []
        var orphans: [(pid_t, ExitStatus)] = []
        var reapWaiters: [CheckedContinuation<Void, Never>] = []
        state.withLock { state in
            let countBefore = state.reapCount
            while true {
                var raw: Int32 = 0
                let pid = waitpid(-1, &raw, WNOHANG)
                if pid == 0 { break }
                if pid < 0 {
                    if errno == EINTR { continue }
                    if errno != ECHILD { logger.error("waitpid(-1) failed", metadata: ["errno": "\(errno)"]) }
                    break
                }
                let status = ExitStatus(waitStatus: raw)
                state.reapCount += 1
                if var registration = state.registered[pid] {
                    if registration.waiters.isEmpty {
                        registration.status = status
                        state.registered[pid] = registration
                    } else {
                        resumptions += registration.waiters.map { ($0, status) }
                        state.registered[pid] = nil
                    }
                } else {
                    orphans.append((pid, status))
                    state.unclaimed.append((pid, status))
                    if state.unclaimed.count > configuration.unclaimedLimit {
                        state.unclaimed.removeFirst(state.unclaimed.count - configuration.unclaimedLimit)
                    }
                }
            }
            if state.reapCount != countBefore {
                reapWaiters = Array(state.reapWaiters.values)
                state.reapWaiters.removeAll()
            }
        }
        for (pid, status) in orphans {
            logger.debug("reaped orphan", metadata: ["pid": "\(pid)", "status": "\(status)"])
        }
        for (continuation, status) in resumptions { continuation.resume(returning: status) }
        for waiter in reapWaiters { waiter.resume() }
    }
}
