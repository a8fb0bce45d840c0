import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The 1 MiB all-zero raw files behind the snapshot layout's `seed`/`bundle` drives
/// (§4.4): they keep the virtio-blk slots of the capture-time layout. Any other size
/// or content is replaced, atomically (§4.19-13).
///
/// Checked on every resume, so the check is cheap: one read and a `memcmp`.
public enum PhantomDisk {
    public static let size = 1024 * 1024

    public static func ensure(at path: String) throws {
        if isIntact(path) { return }
        try HostError.translating { try AtomicFile(path: path, mode: 0o644).write([UInt8](repeating: 0, count: size)) }
    }

    static func isIntact(_ path: String) -> Bool {
        guard let fd = try? POSIX.open(path, O_RDONLY | O_CLOEXEC) else { return false }
        defer { POSIX.close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG, Int(status.st_size) == size else { return false }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        defer { buffer.deallocate() }
        var filled = 0
        while filled < size {
            let n = pread(fd, buffer.baseAddress! + filled, size - filled, off_t(filled))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            filled += n
        }
        guard let zeros = calloc(size, 1) else { return false }
        defer { free(zeros) }
        return memcmp(buffer.baseAddress!, zeros, size) == 0
    }
}
