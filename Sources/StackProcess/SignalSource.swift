import CSystem
import Logging
import StackCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's one owner of asynchronous signals.
///
/// `install()` blocks the signals in the calling thread and reads them from a signalfd
/// on a dedicated thread. Call it first thing in `main`, before other threads exist, so
/// every thread inherits the mask (it logs a warning naming any thread that does not).
/// Each signal also gets a handler — as PID 1 the kernel drops signals that have none,
/// even from the parent namespace — and that handler forwards to the same reader
/// through a self-pipe: Swift's async `main` on Linux parks the main thread in
/// libdispatch's `sigsuspend` with an EMPTY mask, so process-directed signals land in
/// the handler there, never in the signalfd. Children start with an empty mask and
/// default dispositions (`cs_spawn`), so none of this leaks into them.
///
/// SIGCHLD goes to the `Reaper` (if one is attached); every other signal goes to each
/// `subscribe()` stream. The first shutdown signal is also remembered in
/// `shutdownSignal`, so a signal that arrives before anyone listens (during preparation)
/// is not lost.
public final class SignalSource: Sendable {
    public struct Configuration: Sendable {
        /// Signals taken over. SIGCHLD is needed by a `Reaper`.
        public var signals: Set<Signal>
        /// Signals meaning "stop"; the first one received becomes `shutdownSignal`.
        public var shutdownSignals: Set<Signal>
        /// Ignore SIGPIPE, so a write to a closed socket fails with EPIPE instead of
        /// killing the process (children get the default disposition back).
        public var ignoreBrokenPipe: Bool

        public init(
            signals: Set<Signal> = Signal.shutdownRequests.union([.childExited]),
            shutdownSignals: Set<Signal> = Signal.shutdownRequests,
            ignoreBrokenPipe: Bool = true
        ) {
            self.signals = signals
            self.shutdownSignals = shutdownSignals
            self.ignoreBrokenPipe = ignoreBrokenPipe
        }
    }

    private struct State {
        var subscribers: [Int: AsyncStream<Signal>.Continuation] = [:]
        var shutdownWaiters: [Int: CheckedContinuation<Signal?, Never>] = [:]
        var nextID = 0
        var shutdownSignal: Signal?
        var childExitHandler: (@Sendable () -> Void)?
    }

    public let configuration: Configuration
    /// The signalfd (signals blocked in the receiving thread).
    private let descriptor: Int32
    /// The self-pipe the handlers write to (signals that hit an unblocked thread).
    private let forwardedDescriptor: Int32
    private let logger: Logger
    private let state = Mutex(State())

    private static let installed = Mutex(false)

    /// Takes over `configuration.signals` for the rest of the process's life.
    /// Throws `ProcessError.signalSetup` when called twice.
    public static func install(_ configuration: Configuration = Configuration(), logger: Logger) throws -> SignalSource {
        let first = installed.withLock { done in
            defer { done = true }
            return !done
        }
        guard first else {
            throw ProcessError(.signalSetup, "SignalSource.install() was called twice; create one SignalSource in main and pass it along")
        }
        let numbers = configuration.signals.map(\.rawValue).sorted()
        let forwarded = cs_signal_forwarding_open()
        if forwarded < 0 { throw ProcessError(.systemCall, "signal forwarding pipe", errno: -forwarded) }
        for number in numbers {
            let rc = cs_install_forwarding_handler(number)
            if rc < 0 { throw ProcessError(.systemCall, "sigaction \(Signal(number))", errno: -rc) }
        }
        if configuration.ignoreBrokenPipe { _ = signal(SIGPIPE, SIG_IGN) }
        let fd = numbers.withUnsafeBufferPointer { cs_block_signals_to_fd($0.baseAddress, Int32($0.count)) }
        if fd < 0 { throw ProcessError(.systemCall, "signalfd for \(numbers)", errno: -fd) }

        let stragglers = ThreadSignalMasks.threadsNotBlocking(configuration.signals)
        if !stragglers.isEmpty {
            // Still correct (their handler forwards), but their system calls can see EINTR.
            logger.warning("threads started before SignalSource.install() do not block the handled signals; call it first thing in main", metadata: ["threads": "\(stragglers)"])
        }
        let source = SignalSource(configuration: configuration, descriptor: fd, forwardedDescriptor: forwarded, logger: logger)
        BlockingCall.detach { source.readLoop() }
        return source
    }

    private init(configuration: Configuration, descriptor: Int32, forwardedDescriptor: Int32, logger: Logger) {
        self.configuration = configuration
        self.descriptor = descriptor
        self.forwardedDescriptor = forwardedDescriptor
        self.logger = logger
    }

    /// The first shutdown signal received, if any.
    public var shutdownSignal: Signal? { state.withLock { $0.shutdownSignal } }

    /// Every signal other than SIGCHLD received from now on (unbounded buffer: signals
    /// are rare). Subscribe *before* checking `shutdownSignal` to miss nothing.
    public func subscribe() -> AsyncStream<Signal> {
        let (stream, continuation) = AsyncStream.makeStream(of: Signal.self)
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            state.subscribers[state.nextID] = continuation
            return state.nextID
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }

    /// Returns the shutdown signal once one has arrived (at once if one already has), or
    /// `nil` when the calling task is cancelled first.
    public func shutdownRequested() async -> Signal? {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Signal?, Never>) in
                let ready: Signal?? = state.withLock { state in
                    if let signal = state.shutdownSignal { return .some(signal) }
                    if Task.isCancelled { return .some(nil) }
                    state.shutdownWaiters[id] = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            state.withLock { $0.shutdownWaiters.removeValue(forKey: id) }?.resume(returning: nil)
        }
    }

    /// Runs `operation` (a preparation step: migrations, seeding) unless a shutdown
    /// signal arrives first; then the operation is cancelled (`Command.run` stops its
    /// child's group on cancellation), awaited, and `ProcessError.shutdownRequested` is
    /// thrown so the caller can exit promptly without starting anything else.
    public func cancellingOnShutdown<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        switch await runUntilShutdown(operation) {
        case .completed(let result):
            return try result.get()
        case .interrupted(let signal, _):
            throw Self.shutdownError(signal)
        }
    }

    /// How `runUntilShutdown` ended.
    public enum ShutdownOutcome<T: Sendable>: Sendable {
        /// No shutdown signal arrived before the operation ended.
        case completed(Result<T, any Error>)
        /// A shutdown signal arrived first (or before the call: the operation did not
        /// run, its result is a `CancellationError`); the operation was cancelled and
        /// this is how it ended, so the caller can say what was cleaned up.
        case interrupted(Signal, Result<T, any Error>)
    }

    /// `cancellingOnShutdown` for callers that need the operation's own result after an
    /// interrupt (what it stopped, or that it had finished anyway): the operation is
    /// cancelled when a shutdown signal arrives and always awaited.
    public func runUntilShutdown<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async -> ShutdownOutcome<T> {
        if let signal = shutdownSignal { return .interrupted(signal, .failure(CancellationError())) }
        return await withTaskGroup(of: ShutdownRace<T>.self) { group in
            group.addTask {
                do {
                    return .finished(.success(try await operation()))
                } catch {
                    return .finished(.failure(error))
                }
            }
            group.addTask {
                guard let signal = await self.shutdownRequested() else { return .watcherCancelled }
                return .shutdown(signal)
            }
            var signal: Signal?
            while let outcome = await group.next() {
                switch outcome {
                case .finished(let result):
                    group.cancelAll()
                    if let signal { return .interrupted(signal, result) }
                    return .completed(result)
                case .shutdown(let received):
                    signal = received
                    group.cancelAll()
                case .watcherCancelled:
                    continue
                }
            }
            preconditionFailure("the operation's task always reports")
        }
    }

    private static func shutdownError(_ signal: Signal) -> ProcessError {
        ProcessError(.shutdownRequested, "stopped by \(signal) before the step finished")
    }

    /// The Reaper's hook: called on the signal thread for every SIGCHLD. Only one.
    func attachChildExitHandler(_ handler: @escaping @Sendable () -> Void) throws {
        guard configuration.signals.contains(.childExited) else {
            throw ProcessError(.signalSetup, "a Reaper needs SIGCHLD in SignalSource.Configuration.signals")
        }
        try state.withLock { state in
            guard state.childExitHandler == nil else {
                throw ProcessError(.signalSetup, "a Reaper is already attached; two would steal each other's exit statuses")
            }
            state.childExitHandler = handler
        }
    }

    private func readLoop() {
        let sources: [(fd: Int32, read: (Int32, UnsafeMutablePointer<pid_t>) -> Int32)] = [
            (descriptor, { cs_signalfd_read($0, $1) }),
            (forwardedDescriptor, { cs_forwarded_signal_read($0, $1) }),
        ]
        var ready = sources.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        while true {
            let rc = poll(&ready, nfds_t(ready.count), -1)
            if rc < 0 {
                if errno == EINTR { continue }
                logger.critical("signal thread stopped: poll failed", metadata: ["errno": "\(errno)"])
                return
            }
            for (index, source) in sources.enumerated() where ready[index].revents != 0 {
                while true {
                    var sender: pid_t = 0
                    let number = source.read(source.fd, &sender)
                    if number == 0 { break }
                    if number < 0 {
                        if -number == EINTR { continue }
                        logger.critical("signal thread stopped: reading signals failed", metadata: ["errno": "\(-number)"])
                        return
                    }
                    deliver(Signal(number), from: sender)
                }
            }
        }
    }

    private func deliver(_ signal: Signal, from sender: pid_t) {
        if signal == .childExited {
            state.withLock { $0.childExitHandler }?()
            return
        }
        logger.debug("received \(signal)", metadata: ["sender": "\(sender)"])
        let (subscribers, waiters) = state.withLock { state in
            var waiters: [CheckedContinuation<Signal?, Never>] = []
            if state.shutdownSignal == nil && configuration.shutdownSignals.contains(signal) {
                state.shutdownSignal = signal
                waiters = Array(state.shutdownWaiters.values)
                state.shutdownWaiters.removeAll()
            }
            return (Array(state.subscribers.values), waiters)
        }
        for subscriber in subscribers { subscriber.yield(signal) }
        for waiter in waiters { waiter.resume(returning: signal) }
    }
}

/// Which finished first in `SignalSource.runUntilShutdown`.
private enum ShutdownRace<T: Sendable>: Sendable {
    case finished(Result<T, any Error>)
    case shutdown(Signal)
    case watcherCancelled
}
