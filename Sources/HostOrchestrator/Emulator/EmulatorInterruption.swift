import StackCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Emulator {
    /// Runs the part of `start` or `capture` that launches QEMU, so that an interrupt
    /// leaves nothing behind. The executable turns SIGINT/SIGTERM into cancellation of
    /// the task (`SignalSource.runUntilShutdown`); then:
    ///
    ///  1. at once, every QEMU of this run directory gets SIGTERM, so whatever the flow
    ///     waits on (a migration pipe, QMP, the guest agent, a health probe) ends now
    ///     instead of at its deadline;
    ///  2. the flows unwind through their usual failure paths (discarding the VM,
    ///     abandoning a capture), which skip what only a real failure deserves
    ///     (quarantine, cold-boot fallback, serial-log dumps);
    ///  3. a last sweep stops any QEMU still carrying this run directory's pid file —
    ///     e.g. one whose launch was interrupted before it wrote the file — and removes
    ///     the pid file, sockets and session record;
    ///  4. `HostError(.interrupted)` says what was stopped.
    ///
    /// "Every QEMU of this run directory" is right because `body` runs only while this
    /// invocation holds the run directory's lock and after it made sure no VM was
    /// running (a running one is reused or stopped before): any such QEMU is one `body`
    /// launched. A `body` that returned before the cancellation was noticed has finished
    /// its work (a start has written its session record): its result stands.
    func stoppingOwnVMsOnInterrupt<T>(_ action: String, _ body: () async throws -> T) async throws -> T {
        let pidFile = QEMUPidFile(path: context.paths.pidFile)
        let signalled = SignalledProcesses()
        do {
            return try await withTaskCancellationHandler {
                try await body()
            } onCancel: {
                for process in pidFile.processesUsingThisFile() {
                    try? process.send(SIGTERM)
                    signalled.add(process.pid)
                }
            }
        } catch {
            guard Task.isCancelled else { throw error }
            var stopped = signalled.pids
            var survivors: [pid_t] = []
            for process in pidFile.processesUsingThisFile() {
                stopped.insert(process.pid)
                if (try? await process.terminate(grace: .seconds(2))) == nil { survivors.append(process.pid) }
            }
            try? context.paths.removeRuntimeFiles()
            let pids = stopped.sorted().map(String.init).joined(separator: ", ")
            if !survivors.isEmpty {
                throw HostError(.interrupted, "QEMU pid \(survivors.map(String.init).joined(separator: ", ")) launched by this \(action) did not exit after SIGKILL; check it with ps")
            }
            throw HostError(.interrupted, stopped.isEmpty
                ? "no VM had been launched yet; nothing is left running"
                : "stopped the VM this \(action) launched (QEMU pid \(pids)); nothing is left running")
        }
    }
}

/// The QEMU pids the cancellation handler signalled (it runs on whichever thread cancels).
private final class SignalledProcesses: Sendable {
    private let state = Mutex<Set<pid_t>>([])

    func add(_ pid: pid_t) { state.withLock { _ = $0.insert(pid) } }
    var pids: Set<pid_t> { state.withLock { $0 } }
}
