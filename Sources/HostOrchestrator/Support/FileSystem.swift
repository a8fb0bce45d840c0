import CSystem
import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The few file operations this module needs beyond `StackCore.POSIX`, each throwing
/// `HostError` that names the path.
enum FileSystem {
    struct Status: Sendable, Equatable {
        var size: Int64
        var modificationSeconds: Int64
        var modificationNanoseconds: Int64
        var inode: UInt64
        var mode: mode_t

        var isRegularFile: Bool { (mode & S_IFMT) == S_IFREG }
        var isDirectory: Bool { (mode & S_IFMT) == S_IFDIR }
        var isSocket: Bool { (mode & S_IFMT) == S_IFSOCK }
        var isSymbolicLink: Bool { (mode & S_IFMT) == S_IFLNK }

        /// `FIFO`, `socket`, … for messages about a file of the wrong type.
        static func typeName(_ mode: mode_t) -> String {
            switch mode & S_IFMT {
            case S_IFREG: "regular file"
            case S_IFDIR: "directory"
            case S_IFLNK: "symbolic link"
            case S_IFIFO: "FIFO"
            case S_IFSOCK: "socket"
            case S_IFCHR: "character device"
            case S_IFBLK: "block device"
            default: "file type \(mode & S_IFMT)"
            }
        }
    }

    /// lstat (symlinks are not followed); nil when the path does not exist.
    static func status(_ path: String, followLinks: Bool = false) throws -> Status? {
        var st = stat()
        let rc = followLinks ? stat(path, &st) : lstat(path, &st)
        if rc != 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw HostError.systemCall("stat \(path)", errno: errno)
        }
        #if canImport(Darwin)
        let seconds = Int64(st.st_mtimespec.tv_sec), nanos = Int64(st.st_mtimespec.tv_nsec)
        #else
        let seconds = Int64(st.st_mtim.tv_sec), nanos = Int64(st.st_mtim.tv_nsec)
        #endif
        return Status(size: Int64(st.st_size), modificationSeconds: seconds, modificationNanoseconds: nanos,
                      inode: UInt64(st.st_ino), mode: st.st_mode)
    }

    static func isSocket(_ path: String) -> Bool {
        (try? status(path))??.isSocket ?? false
    }

    /// unlink; a missing file is not an error.
    static func removeFile(_ path: String) throws {
        if unlink(path) != 0 && errno != ENOENT {
            throw HostError.systemCall("remove \(path)", errno: errno)
        }
    }

    /// rm -rf without following symlinks; a missing path is not an error.
    static func removeTree(_ path: String) throws {
        guard let st = try status(path) else { return }
        if !st.isDirectory {
            try removeFile(path)
            return
        }
        let rc = cs_remove_tree(path)
        if rc != 0 {
            throw HostError.systemCall("remove \(path)", errno: -rc)
        }
    }

    static func rename(_ from: String, _ to: String) throws {
        if systemRename(from, to) != 0 {
            throw HostError.systemCall("rename \(from) -> \(to)", errno: errno)
        }
    }

    /// mkdir -p; the last component gets `mode` even if it already existed.
    static func makeDirectory(_ path: String, mode: mode_t) throws {
        try HostError.translating { try POSIX.makeDirectories(path, mode: mode) }
        if chmod(path, mode) != 0 {
            throw HostError.systemCall("chmod \(path)", errno: errno)
        }
    }

    static func setMode(_ path: String, _ mode: mode_t) throws {
        if chmod(path, mode) != 0 {
            throw HostError.systemCall("chmod \(path)", errno: errno)
        }
    }

    static func symbolicLink(_ target: String, at path: String) throws {
        if symlink(target, path) != 0 {
            throw HostError.systemCall("symlink \(path) -> \(target)", errno: errno)
        }
    }

    /// The link's target; nil when `path` does not exist.
    static func linkTarget(_ path: String) throws -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buffer, buffer.count - 1)
        if n < 0 {
            if errno == ENOENT { return nil }
            throw HostError.systemCall("readlink \(path)", errno: errno)
        }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Names in `directory` (without `.` and `..`); empty when it does not exist.
    static func contents(of directory: String) throws -> [String] {
        guard let dir = opendir(directory) else {
            if errno == ENOENT { return [] }
            throw HostError.systemCall("opendir \(directory)", errno: errno)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    static func readText(_ path: String, limit: Int = 1024 * 1024) throws -> String {
        String(decoding: try readRegularFile(path, limit: limit), as: UTF8.self)
    }

    /// The whole content of the regular file at `path`, at most `limit` bytes.
    ///
    /// Files this module reads sit in directories others can write to, and are read
    /// while a lock is held: a plain open(2) of a FIFO would block until a writer
    /// comes, and a device would never end. So the file is opened with O_NONBLOCK
    /// (an open that can block returns at once; reads of a regular file are not
    /// affected), its type and size are checked with fstat before the first read,
    /// and anything but a regular file of at most `limit` bytes fails with
    /// `.malformedFile` naming the path. `followLinks: false` adds O_NOFOLLOW, for
    /// files only this program writes (a symlink there was put by someone else).
    static func readRegularFile(_ path: String, limit: Int, followLinks: Bool = true) throws -> [UInt8] {
        let flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | (followLinks ? 0 : O_NOFOLLOW)
        let fd = try HostError.translating { try POSIX.open(path, flags) }
        defer { POSIX.close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw HostError.systemCall("stat \(path)", errno: errno) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw HostError(.malformedFile, "\(path) is not a regular file (\(Status.typeName(st.st_mode)))")
        }
        guard st.st_size <= limit else {
            throw HostError(.malformedFile, "\(path) is \(st.st_size) bytes, more than the \(limit) expected")
        }
        return try HostError.translating { try POSIX.readAll(fd, limit: limit, context: path) }
    }

    /// Creates or truncates `path` to zero length (mode for a new file: 0600).
    static func truncate(_ path: String) throws {
        let fd = try HostError.translating { try POSIX.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600) }
        POSIX.close(fd)
    }

    /// An absolute, lexically normalised form of `path` (`.`/`..`/`//` resolved
    /// without touching the filesystem), relative paths taken from `base`.
    static func absolute(_ path: String, base: String) -> String {
        let joined = path.hasPrefix("/") ? path : Path.join(base, path)
        var parts: [Substring] = []
        for part in joined.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { _ = parts.popLast(); continue }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }
}

@inline(__always) private func systemRename(_ from: String, _ to: String) -> Int32 { rename(from, to) }
