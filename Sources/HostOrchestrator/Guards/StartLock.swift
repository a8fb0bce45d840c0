import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive `flock` on RUN_DIR/lock, held while start/stop/capture/reset change
/// the VM's files, so two invocations cannot delete an overlay under a live VM or
/// clobber each other's pid file and sockets (§5.4 #12).
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

    /// Takes the lock, waiting up to `timeout` (backoff from 10 ms) for a holder to
    /// finish; zero means one try. Throws `.lockHeld` naming the holder's pid.
    public static func acquire(path: String, timeout: Duration = .zero) async throws -> StartLock {
        try FileSystem.makeDirectory(Path.directory(of: path), mode: 0o755)
        let fd = try HostError.translating { try POSIX.open(path, O_RDWR | O_CREAT, mode: 0o644) }
        let deadline = ContinuousClock.now + timeout
        var interval = Duration.milliseconds(10)
        while true {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 {
                let lock = StartLock(path: path, fd: fd)
                lock.recordHolder()
                return lock
            }
            let code = errno
            if code == EINTR { continue }
            guard code == EWOULDBLOCK else {
                close(fd)
                throw HostError.systemCall("flock \(path)", errno: code)
            }
            let now = ContinuousClock.now
            if now >= deadline {
                let holder = (try? FileSystem.readText(path, limit: 32))?.trimmingWhitespace ?? ""
                close(fd)
                let who = holder.isEmpty ? "another stack-emulator process" : "stack-emulator pid \(holder)"
                throw HostError(.lockHeld, "\(who) is already starting, stopping or capturing this emulator (lock \(path)); wait for it to finish", errno: code)
            }
            try? await Task.sleep(for: min(interval, deadline - now))
            interval = min(interval * 2, .milliseconds(250))
        }
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
