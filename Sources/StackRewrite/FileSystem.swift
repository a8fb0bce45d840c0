import CSystem
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file name as the kernel gave it: raw bytes plus a terminating NUL, so names that
/// are not valid UTF-8 still reach `openat` unchanged.
struct FileName: Sendable {
    let bytes: [CChar]

    init(_ bytes: [CChar]) { self.bytes = bytes }

    init(_ string: String) { self.bytes = Array(string.utf8CString) }

    func withCString<R>(_ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        try bytes.withUnsafeBufferPointer { try body($0.baseAddress!) }
    }

    var display: String {
        String(decoding: bytes.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// One directory entry from `readdir`.
struct DirectoryEntry: Sendable {
    let name: FileName
    let type: UInt8
}

/// `*at` system calls relative to directory descriptors, retrying on EINTR, throwing
/// `RewriteError` with the path built lazily (it is only needed on failure).
enum FileSystem {
    /// O_NONBLOCK: if a FIFO was swapped in after readdir, open must not hang on it.
    static let fileOpenFlags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
    static let directoryOpenFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC

    /// Returns the descriptor, or -errno.
    static func openAt(_ directory: Int32, _ name: FileName, _ flags: Int32, _ mode: mode_t = 0) -> Int32 {
        name.withCString { cName in
            while true {
                let fd = openat(directory, cName, flags, mode)
                if fd >= 0 { return fd }
                if errno != EINTR { return -errno }
            }
        }
    }

    static func status(of fd: Int32, path: @autoclosure () -> String) throws -> stat {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw RewriteError.systemCall("stat", path: path(), errno: errno) }
        return st
    }

    /// fstatat without following a final symlink; nil when the entry vanished.
    static func linkStatus(_ directory: Int32, _ name: FileName, path: @autoclosure () -> String) throws -> stat? {
        var st = stat()
        let rc = name.withCString { fstatat(directory, $0, &st, AT_SYMLINK_NOFOLLOW) }
        if rc == 0 { return st }
        if errno == ENOENT { return nil }
        throw RewriteError.systemCall("stat", path: path(), errno: errno)
    }

    static func isDirectory(_ st: stat) -> Bool { (st.st_mode & S_IFMT) == S_IFDIR }
    static func isRegular(_ st: stat) -> Bool { (st.st_mode & S_IFMT) == S_IFREG }
    static func isSymlink(_ st: stat) -> Bool { (st.st_mode & S_IFMT) == S_IFLNK }

    static func writeAll(_ fd: Int32, _ start: UnsafeRawPointer, _ count: Int, path: @autoclosure () -> String) throws {
        var offset = 0
        while offset < count {
            let n = write(fd, start + offset, count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw RewriteError.systemCall("write", path: path(), errno: errno)
            }
            offset += n
        }
    }

    /// Reads up to `count` bytes; 0 at end of file.
    static func read(_ fd: Int32, into start: UnsafeMutableRawPointer, _ count: Int, path: @autoclosure () -> String) throws -> Int {
        while true {
            let n = Glibc.read(fd, start, count)
            if n >= 0 { return n }
            if errno != EINTR { throw RewriteError.systemCall("read", path: path(), errno: errno) }
        }
    }

    /// Lists a directory (without "." and "..") from a freshly opened descriptor.
    static func list(_ directory: Int32, buffer: UnsafeMutableRawBufferPointer, path: @autoclosure () -> String) throws -> [DirectoryEntry] {
        var entries: [DirectoryEntry] = []
        while true {
            let filled = cs_getdents64(directory, buffer.baseAddress, buffer.count)
            if filled == 0 { return entries }
            guard filled > 0 else { throw RewriteError.systemCall("list directory", path: path(), errno: Int32(-filled)) }
            var offset = 0
            while offset < filled {
                let record = buffer.baseAddress! + offset
                let length = Int(record.loadUnaligned(fromByteOffset: 16, as: UInt16.self))
                let type = record.load(fromByteOffset: 18, as: UInt8.self)
                let name = (record + 19).assumingMemoryBound(to: CChar.self)
                offset += length
                let count = strlen(name)
                if name[0] == 0x2E && (count == 1 || (count == 2 && name[1] == 0x2E)) { continue }
                entries.append(DirectoryEntry(name: FileName(Array(UnsafeBufferPointer(start: name, count: count + 1))), type: type))
            }
        }
    }

    static func list(_ directory: Int32, path: @autoclosure () -> String) throws -> [DirectoryEntry] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 32 * 1024, alignment: 8)
        defer { buffer.deallocate() }
        return try list(directory, buffer: buffer, path: path())
    }

    /// The target text of a symlink, byte for byte (NUL-terminated).
    static func readLink(_ directory: Int32, _ name: FileName, path: @autoclosure () -> String) throws -> [CChar] {
        var capacity = 256
        while true {
            var buffer = [CChar](repeating: 0, count: capacity)
            let n = name.withCString { cName in
                buffer.withUnsafeMutableBufferPointer { readlinkat(directory, cName, $0.baseAddress!, capacity) }
            }
            if n < 0 { throw RewriteError.systemCall("read symlink", path: path(), errno: errno) }
            if n < capacity {
                buffer.removeSubrange(n...)
                buffer.append(0)
                return buffer
            }
            capacity *= 4
        }
    }

    /// Removes `name` in `directory` whatever it is; a directory with everything in it,
    /// never following a symlink.
    static func remove(_ directory: Int32, _ name: FileName, path: String) throws {
        let rc = name.withCString { unlinkat(directory, $0, 0) }
        if rc == 0 || errno == ENOENT { return }
        guard errno == EISDIR || errno == EPERM else { throw RewriteError.systemCall("remove", path: path, errno: errno) }
        let fd = openAt(directory, name, directoryOpenFlags)
        guard fd >= 0 else { throw RewriteError.systemCall("remove", path: path, errno: -fd) }
        do {
            defer { close(fd) }
            for entry in try list(fd, path: path) {
                try remove(fd, entry.name, path: path + "/" + entry.name.display)
            }
        }
        let removed = name.withCString { unlinkat(directory, $0, AT_REMOVEDIR) }
        if removed != 0 && errno != ENOENT { throw RewriteError.systemCall("remove directory", path: path, errno: errno) }
    }

    /// Copies `count` bytes from `input`'s offset to `output`'s, in the kernel when it
    /// can (copy_file_range), else through `scratch`. Returns bytes copied (fewer only
    /// when the input ended early).
    static func copyData(from input: Int32, to output: Int32, count: Int64, scratch: UnsafeMutableRawBufferPointer,
                         kernelCopy: KernelCopySupport, inputPath: @autoclosure () -> String, outputPath: @autoclosure () -> String) throws -> Int64 {
        var remaining = count
        if kernelCopy.isAvailable {
            while remaining > 0 {
                let n = cs_copy_file_range(input, output, Int(min(remaining, 1 << 30)))
                if n > 0 { remaining -= Int64(n); continue }
                if n == 0 { return count - remaining }
                let code = Int32(-n)
                if code == EXDEV || code == ENOSYS || code == EOPNOTSUPP || code == EINVAL {
                    // Not between these file systems (overlayfs, old kernels): stop trying.
                    if remaining == count { kernelCopy.markUnavailable() }
                    break
                }
                if code == EIO || code == EBADF || code == EISDIR {
                    throw RewriteError.systemCall("read", path: inputPath(), errno: code)
                }
                throw RewriteError.systemCall("copy into", path: outputPath(), errno: code)
            }
        }
        while remaining > 0 {
            let n = try read(input, into: scratch.baseAddress!, Int(min(remaining, Int64(scratch.count))), path: inputPath())
            if n == 0 { break }
            try writeAll(output, scratch.baseAddress!, n, path: outputPath())
            remaining -= Int64(n)
        }
        return count - remaining
    }
}

/// Remembers, for one pass, that copy_file_range does not work here, so the failing
/// call is not repeated for every file.
final class KernelCopySupport: Sendable {
    private let available = Atomic<Bool>(true)

    init() {}

    var isAvailable: Bool { available.load(ordering: .relaxed) }
    func markUnavailable() { available.store(false, ordering: .relaxed) }
}
