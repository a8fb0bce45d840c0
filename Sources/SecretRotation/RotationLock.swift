import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive `flock` on a file beside the journal, so two rotations never interleave
/// their steps. The kernel drops it when the holder dies (kill -9 included), so a crash
/// never leaves a stale lock; the file itself stays (removing it would let a third
/// process lock a new inode while the second still holds the old one).
final class RotationLock {
    private let fd: Int32

    private init(fd: Int32) { self.fd = fd }

    /// Tries `LOCK_NB` from 10 ms with backoff until `timeout`; `onWait` is called once
    /// when the lock is found taken.
    static func acquire(path: String, timeout: Duration, onWait: () -> Void = {}) async throws -> RotationLock {
        let fd: Int32
        do {
            try POSIX.makeDirectories(Path.directory(of: path), mode: 0o700)
            fd = try POSIX.open(path, O_RDWR | O_CREAT, mode: 0o600)
        } catch {
            throw RotationError(.stateWrite, "open the rotation lock", underlying: error)
        }
        let deadline = ContinuousClock.now + timeout
        var delay = Duration.milliseconds(10)
        var waited = false
        while true {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return RotationLock(fd: fd) }
            let code = errno
            if code == EINTR { continue }
            guard code == EWOULDBLOCK else {
                POSIX.close(fd)
                throw RotationError(.stateWrite, "lock \(path): \(StackError.describe(errno: code))", errno: code)
            }
            if !waited {
                waited = true
                onWait()
            }
            guard ContinuousClock.now + delay < deadline else {
                POSIX.close(fd)
                throw RotationError(.locked, "another rotate-secrets holds \(path) and did not finish within \(timeout); wait for it, then run again")
            }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .milliseconds(250))
        }
    }

    deinit {
        POSIX.close(fd)
    }
}
