import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive `flock` on RUN_DIR/lock, held while start/stop/capture/reset change
/// the VM's files, so two invocations cannot delete an overlay under a live VM or
/// clobber each other's pid file and sockets (§5.4 #12). The snapshot store, shared by
/// every run directory using the same IMAGE_DIR, has its own lock of this type
/// (`SnapshotStore.lockPath`).
///
/// The kernel drops the lock when the holder exits, however it exits, so a crash never
/// leaves a stale lock. The descriptor is close-on-exec: QEMU must not inherit it, or
/// the lock would live as long as the VM. The holder writes its pid into the file only
/// to name it in the error message.
public final class StartLock: Sendable {
    public let path: String
    private let fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit { close(fd) }

    /// What a start, stop, capture or reset is doing while it holds RUN_DIR/lock (the
    /// wording of the "held" error).
    public static let runDirectoryActivity = "starting, stopping or capturing this emulator"

    /// Takes the lock, waiting up to `timeout` (backoff from 10 ms) for a holder to
    /// finish; zero means one try. Throws `.lockHeld` naming the holder's pid and what
    /// holders of this lock do (`activity`).
    public static func acquire(path: String, timeout: Duration = .zero,
                               activity: String = StartLock.runDirectoryActivity) async throws -> StartLock {
        let fd = try open(path)
        let deadline = ContinuousClock.now + timeout
        var interval = Duration.milliseconds(10)
        while true {
            if try take(fd, path: path) { return StartLock(locking: fd, path: path) }
            let now = ContinuousClock.now
            if now >= deadline { throw held(fd, path: path, activity: activity) }
            do {
                try await Task.sleep(for: min(interval, deadline - now))
            } catch {
                // Cancelled (an interrupt): stop waiting.
                close(fd)
                throw error
            }
            interval = min(interval * 2, .milliseconds(250))
        }
    }

    /// One try, without suspending: for synchronous callers that give up at once.
    public static func tryAcquire(path: String, activity: String = StartLock.runDirectoryActivity) throws -> StartLock {
        let fd = try open(path)
        guard try take(fd, path: path) else { throw held(fd, path: path, activity: activity) }
        return StartLock(locking: fd, path: path)
    }

    private convenience init(locking fd: Int32, path: String) {
        self.init(path: path, fd: fd)
        recordHolder()
    }

    private static func open(_ path: String) throws -> Int32 {
        try FileSystem.makeDirectory(Path.directory(of: path), mode: 0o755)
        return try HostError.translating { try POSIX.open(path, O_RDWR | O_CREAT, mode: 0o644) }
    }

    /// flock without blocking: true when taken, false when another holder has it.
    /// Closes `fd` before throwing.
    private static func take(_ fd: Int32, path: String) throws -> Bool {
        while true {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return true }
            let code = errno
            if code == EINTR { continue }
            if code == EWOULDBLOCK { return false }
            close(fd)
            throw HostError.systemCall("flock \(path)", errno: code)
        }
    }

    /// The `.lockHeld` error naming the holder; closes `fd`.
    private static func held(_ fd: Int32, path: String, activity: String) -> HostError {
        let holder = (try? FileSystem.readText(path, limit: 32))?.trimmingWhitespace ?? ""
        close(fd)
        let who = holder.isEmpty ? "another stack-emulator process" : "stack-emulator pid \(holder)"
        return HostError(.lockHeld, "\(who) is already \(activity) (lock \(path)); wait for it to finish", errno: EWOULDBLOCK)
    }

    /// Releases the lock now (it is also released when this object is freed).
    public func release() {
        _ = flock(fd, LOCK_UN)
    }

    private func recordHolder() {
        let text = Array("\(getpid())\n".utf8)
        guard ftruncate(fd, 0) == 0 else { return }
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }
}
