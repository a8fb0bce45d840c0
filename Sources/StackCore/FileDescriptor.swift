#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Thin, retrying wrappers over the POSIX calls the project uses on raw descriptors.
/// Every function throws `StackError.systemCall` naming `context` (usually a path).
public enum POSIX {
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0) throws -> Int32 {
        while true {
            let fd = systemOpen(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno == EINTR { continue }
            throw StackError.systemCall("open \(path)", errno: errno)
        }
    }

    /// Writes every byte, retrying on EINTR and short writes.
    public static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, context: @autoclosure () -> String) throws {
        var offset = 0
        while offset < buffer.count {
            let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw StackError.systemCall("write \(context())", errno: errno)
            }
            offset += n
        }
    }

    public static func writeAll(_ fd: Int32, _ bytes: some Collection<UInt8>, context: @autoclosure () -> String) throws {
        let done: Void? = try bytes.withContiguousStorageIfAvailable { buffer in
            try writeAll(fd, UnsafeRawBufferPointer(buffer), context: context())
        }
        if done == nil {
            try Array(bytes).withUnsafeBytes { try writeAll(fd, $0, context: context()) }
        }
    }

    /// Reads up to `buffer.count` bytes; 0 means end of file.
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, context: @autoclosure () -> String) throws -> Int {
        while true {
            let n = systemRead(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw StackError.systemCall("read \(context())", errno: errno)
        }
    }

    /// Reads the whole descriptor, refusing more than `limit` bytes.
    public static func readAll(_ fd: Int32, limit: Int, context: @autoclosure () -> String) throws -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = try chunk.withUnsafeMutableBytes { try read(fd, into: $0, context: context()) }
            if n == 0 { return result }
            if result.count + n > limit {
                throw StackError(.tooLarge, "\(context()): more than \(limit) bytes")
            }
            result.append(contentsOf: chunk[0..<n])
        }
    }

    public static func fsync(_ fd: Int32, context: @autoclosure () -> String) throws {
        while systemFsync(fd) != 0 {
            if errno == EINTR { continue }
            throw StackError.systemCall("fsync \(context())", errno: errno)
        }
    }

    public static func close(_ fd: Int32) {
        _ = systemClose(fd)
    }

    /// Reads a whole file (small files only: env files, pid files, metadata).
    public static func readFile(_ path: String, limit: Int = 16 * 1024 * 1024) throws -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        return try readAll(fd, limit: limit, context: path)
    }

    /// `true` when `path` exists (any type, symlinks not followed).
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// mkdir -p with `mode` for the directories it creates.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws {
        var st = stat()
        if stat(path, &st) == 0 {
            if (st.st_mode & S_IFMT) == S_IFDIR { return }
            throw StackError.systemCall("mkdir \(path)", errno: ENOTDIR)
        }
        let parent = Path.directory(of: path)
        if parent != path && !parent.isEmpty { try makeDirectories(parent, mode: mode) }
        if mkdir(path, mode) != 0 && errno != EEXIST {
            throw StackError.systemCall("mkdir \(path)", errno: errno)
        }
    }
}

// Unambiguous names for the libc functions shadowed by `POSIX`'s own members.
@inline(__always) private func systemOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(path, flags, mode) }
@inline(__always) private func systemRead(_ fd: Int32, _ buf: UnsafeMutableRawPointer?, _ n: Int) -> Int { read(fd, buf, n) }
@inline(__always) private func systemFsync(_ fd: Int32) -> Int32 { fsync(fd) }
@inline(__always) private func systemClose(_ fd: Int32) -> Int32 { close(fd) }

/// String path helpers (no Foundation, byte-exact: paths are not normalised).
public enum Path {
    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    public static func lastComponent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    public static func join(_ base: String, _ component: String) -> String {
        if base.hasSuffix("/") { return base + component }
        return base + "/" + component
    }
}
