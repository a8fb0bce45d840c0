import CSystem
import StackCore
import StackProcess
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A running QEMU that is verifiably ours, pinned by a pidfd on Linux so a signal can
/// never reach another process that later got the same pid (§5.4 #11).
public final class QEMUProcess: Sendable {
    public let pid: pid_t
    /// Which process this is beyond its pid (nil where `/proc` cannot tell).
    public let identity: ProcessIdentity?
    /// -1 where pidfds are unavailable.
    private let pidfd: Int32

    init(pid: pid_t, pidfd: Int32, identity: ProcessIdentity? = nil) {
        self.pid = pid
        self.pidfd = pidfd
        self.identity = identity
    }

    deinit {
        if pidfd >= 0 { close(pidfd) }
    }

    /// True until the process has exited.
    public var isRunning: Bool {
        if pidfd >= 0 {
            // A pidfd becomes readable when the process exits.
            var descriptor = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
            return poll(&descriptor, 1, 0) == 0
        }
        return kill(pid, 0) == 0 || errno == EPERM
    }

    /// Sends `signal` to exactly this process; one that already exited is not an error.
    public func send(_ signal: Int32) throws {
        let rc = pidfd >= 0 ? cs_pidfd_send_signal(pidfd, signal) : (kill(pid, signal) == 0 ? 0 : -errno)
        if rc != 0 && rc != -ESRCH {
            throw HostError.systemCall("signal \(signal) to QEMU pid \(pid)", errno: -rc)
        }
    }

    /// Waits for the process to exit; false when `timeout` passed first. QEMU under
    /// `-daemonize` is not our child, so this watches the pidfd rather than waitpid.
    public func waitForExit(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        if pidfd >= 0 {
            let milliseconds = Int32(clamping: max(0, (timeout.components.seconds * 1000) + timeout.components.attoseconds / 1_000_000_000_000_000))
            // The closure keeps `self` (and so the pidfd) alive while the thread polls.
            return await BlockingCall.run { [self] in pollForExit(milliseconds: milliseconds) }
        }
        var interval = Duration.milliseconds(10)
        while isRunning {
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: min(interval, deadline - ContinuousClock.now))
            interval = min(interval * 2, .milliseconds(200))
        }
        return true
    }

    private func pollForExit(milliseconds: Int32) -> Bool {
        var descriptor = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        while true {
            let rc = poll(&descriptor, 1, milliseconds)
            if rc < 0 && errno == EINTR { continue }
            return rc > 0
        }
    }

    public enum Termination: Sendable, Equatable {
        case alreadyGone
        case exitedOnSIGTERM
        case killed
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL. QEMU flushes its disk images on
    /// SIGTERM; asking the guest to power down first (QMP) is the caller's step.
    @discardableResult
    public func terminate(grace: Duration = .seconds(3)) async throws -> Termination {
        guard isRunning else { return .alreadyGone }
        try send(SIGTERM)
        if await waitForExit(timeout: grace) { return .exitedOnSIGTERM }
        try send(SIGKILL)
        if await waitForExit(timeout: .seconds(5)) { return .killed }
        throw HostError(.systemCall, "QEMU pid \(pid) survived SIGKILL for 5 s (stuck in the kernel?)")
    }
}

/// Reads `qemu.pid` without trusting it: the pid must be alive AND be a
/// `qemu-system-*` started with `-pidfile <this file>` (its /proc cmdline), so a stale
/// file whose number now belongs to another process reads as "not running".
public struct QEMUPidFile: Sendable {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    public enum Lookup: Sendable {
        case running(QEMUProcess)
        case notRunning(NotRunning)

        public var process: QEMUProcess? {
            if case .running(let process) = self { return process }
            return nil
        }
    }

    public enum NotRunning: Sendable, Equatable, CustomStringConvertible {
        case noPidFile
        case unreadable(String)
        case exited(pid: pid_t)
        /// The pid is alive but is some other program: the file is stale.
        case pidReused(pid: pid_t, commandLine: String)

        public var description: String {
            switch self {
            case .noPidFile: "no pid file"
            case .unreadable(let why): "unreadable pid file: \(why)"
            case .exited(let pid): "pid \(pid) has exited"
            case .pidReused(let pid, let commandLine): "pid \(pid) now belongs to another program (\(commandLine.prefix(80)))"
            }
        }
    }

    public func lookup() -> Lookup {
        let text: String
        do {
            guard POSIX.exists(path) else { return .notRunning(.noPidFile) }
            text = try FileSystem.readText(path, limit: 64)
        } catch {
            return .notRunning(.unreadable("\(error)"))
        }
        let digits = text.trimmingWhitespace
        guard let pid = pid_t(digits), pid > 1 else {
            return .notRunning(.unreadable("\(path) does not hold a process id"))
        }
        #if os(Linux)
        let pidfd = cs_pidfd_open(pid)
        if pidfd == -ESRCH { return .notRunning(.exited(pid: pid)) }
        guard pidfd >= 0 else {
            // Kernels before 5.3: fall back to pid checks only.
            return identify(pid: pid, pidfd: -1)
        }
        return identify(pid: pid, pidfd: pidfd)
        #else
        // No /proc: trust a live pid (weaker; documented).
        guard kill(pid, 0) == 0 || errno == EPERM else { return .notRunning(.exited(pid: pid)) }
        return .running(QEMUProcess(pid: pid, pidfd: -1))
        #endif
    }

    /// Every live QEMU started with `-pidfile <this file>`, whether or not the file names
    /// it yet: a launch interrupted while QEMU daemonized can leave a QEMU that has not
    /// written the file. Found by scanning `/proc` (only the holder of the run
    /// directory's lock launches such QEMUs, so each is that holder's). Where there is
    /// no `/proc`, the pid file's process only.
    public func processesUsingThisFile() -> [QEMUProcess] {
        #if os(Linux)
        var found: [pid_t: QEMUProcess] = [:]
        if let named = lookup().process { found[named.pid] = named }
        // `comm` is cut to 15 bytes: "qemu-system-x86", "qemu-system-aar".
        for entry in ProcessTable.entries() where entry.name.hasPrefix("qemu-system") && found[entry.pid] == nil && !entry.isZombie {
            let pidfd = cs_pidfd_open(entry.pid)
            if pidfd == -ESRCH { continue }
            if case .running(let process) = identify(pid: entry.pid, pidfd: pidfd >= 0 ? pidfd : -1) {
                found[entry.pid] = process
            }
        }
        return found.keys.sorted().compactMap { found[$0] }
        #else
        return lookup().process.map { [$0] } ?? []
        #endif
    }

    #if os(Linux)
    /// Reads the command line and the start time after opening the pidfd, then checks
    /// the pidfd is still live: what was read is then the pidfd's process, not a
    /// successor's.
    private func identify(pid: pid_t, pidfd: Int32) -> Lookup {
        let identity = ProcessIdentity.of(pid: pid)
        let raw = try? POSIX.readFile("/proc/\(pid)/cmdline", limit: 1024 * 1024)
        let process = QEMUProcess(pid: pid, pidfd: pidfd, identity: identity)
        guard let raw, process.isRunning else {
            return .notRunning(.exited(pid: pid))
        }
        let argv = raw.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        guard isOurQEMU(argv) else {
            return .notRunning(.pidReused(pid: pid, commandLine: argv.joined(separator: " ")))
        }
        return .running(process)
    }
    #endif

    func isOurQEMU(_ argv: [String]) -> Bool {
        guard let program = argv.first, Path.lastComponent(of: program).hasPrefix("qemu-system-") else { return false }
        return zip(argv, argv.dropFirst()).contains { $0 == "-pidfile" && $1 == path }
    }
}

extension String {
    var trimmingWhitespace: String {
        // Character.isWhitespace also covers "\r\n", which is a single Character.
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
