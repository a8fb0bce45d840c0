import StackCore
import StackProcess
import StackRewrite
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A temporary tree for one test, with byte-level helpers.
///
/// Not `TestSupport.TemporaryDirectory`: its initializer reads the mkdtemp result
/// through a pointer escaped from `withUnsafeBufferPointer` (crashes under load).
struct Fixture {
    let root: String

    init() throws {
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(base)/stack-rewrite-XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) != nil }
        guard created else { throw StackError.systemCall("mkdtemp in \(base)", errno: errno) }
        root = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// rm -rf, restoring permissions tests took away. Waits only for `rm`.
    func remove() {
        let command = Command("/bin/sh", arguments: ["-c", "chmod -R u+rwX \"$0\" 2>/dev/null; rm -rf \"$0\"", root],
                              environment: ["PATH": Command.defaultSearchPath])
        if let child = try? command.spawn() {
            var status: Int32 = 0
            while waitpid(child.pid, &status, 0) < 0 && errno == EINTR {}
        }
    }

    func path(_ relative: String) -> String { Path.join(root, relative) }

    func write(_ relative: String, _ text: String, mode: mode_t = 0o644) throws {
        try write(relative, Array(text.utf8), mode: mode)
    }

    func write(_ relative: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
        let full = path(relative)
        try POSIX.makeDirectories(Path.directory(of: full))
        let fd = try POSIX.open(full, O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        defer { POSIX.close(fd) }
        try POSIX.writeAll(fd, bytes, context: full)
        guard fchmod(fd, mode) == 0 else { throw StackError.systemCall("fchmod \(full)", errno: errno) }
    }

    func makeDirectory(_ relative: String, mode: mode_t = 0o755) throws {
        try POSIX.makeDirectories(path(relative))
        guard chmod(path(relative), mode) == 0 else { throw StackError.systemCall("chmod", errno: errno) }
    }

    func symlink(_ relative: String, to target: String) throws {
        let full = path(relative)
        try POSIX.makeDirectories(Path.directory(of: full))
        guard Glibc.symlink(target, full) == 0 else { throw StackError.systemCall("symlink \(full)", errno: errno) }
    }

    func read(_ relative: String) throws -> [UInt8] { try POSIX.readFile(path(relative), limit: 1 << 30) }

    func text(_ relative: String) throws -> String { String(decoding: try read(relative), as: UTF8.self) }

    func status(_ relative: String) throws -> stat { try Fixture.status(path(relative)) }

    static func status(_ full: String) throws -> stat {
        var st = stat()
        guard lstat(full, &st) == 0 else { throw StackError.systemCall("lstat \(full)", errno: errno) }
        return st
    }

    func linkTarget(_ relative: String) throws -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(path(relative), &buffer, buffer.count)
        guard n >= 0 else { throw StackError.systemCall("readlink", errno: errno) }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Sets access and modification time (seconds, nanoseconds) without following symlinks.
    func setTimes(_ relative: String, seconds: Int, nanoseconds: Int = 0) throws {
        var times = [timespec(tv_sec: seconds, tv_nsec: nanoseconds), timespec(tv_sec: seconds, tv_nsec: nanoseconds)]
        guard utimensat(AT_FDCWD, path(relative), &times, AT_SYMLINK_NOFOLLOW) == 0 else {
            throw StackError.systemCall("utimensat", errno: errno)
        }
    }

    func exists(_ relative: String) -> Bool { POSIX.exists(path(relative)) }

    /// Every entry (relative path) under the root, sorted.
    func listing(_ relative: String = "") async throws -> [String] {
        let base = relative.isEmpty ? root : path(relative)
        let output = try await TestShell.run("cd '\(base)' && find . -mindepth 1 | sort")
        return output.split(separator: "\n").map { String($0.dropFirst(2)) }
    }
}

extension stat {
    var permissions: mode_t { st_mode & 0o7777 }
    var modificationTime: (Int, Int) { (st_mtim.tv_sec, st_mtim.tv_nsec) }
    var isSymlink: Bool { (st_mode & S_IFMT) == S_IFLNK }
    var isRegular: Bool { (st_mode & S_IFMT) == S_IFREG }
    var isDirectory: Bool { (st_mode & S_IFMT) == S_IFDIR }
}

/// The sentinel rule from a dictionary.
func sentinels(_ values: [String: String]) -> RewriteRule { .sentinels(SentinelValues(values)) }

/// A deliberately naive implementation of the token grammar, to check the streaming
/// engine against: longest `STACK_ENV_VAR_SENTINEL[A-Z_]*`, `_` separator, set and
/// non-empty values only.
func referenceSentinelRewrite(_ input: [UInt8], values: [String: String]) -> [UInt8] {
    let prefix = Array("STACK_ENV_VAR_SENTINEL".utf8)
    var output: [UInt8] = []
    var index = 0
    while index < input.count {
        guard input[index...].starts(with: prefix) else {
            output.append(input[index])
            index += 1
            continue
        }
        var end = index + prefix.count
        while end < input.count, (input[end] >= 0x41 && input[end] <= 0x5A) || input[end] == 0x5F { end += 1 }
        let token = Array(input[index..<end])
        if end > index + prefix.count + 1, input[index + prefix.count] == 0x5F,
           let value = values[String(decoding: input[(index + prefix.count + 1)..<end], as: UTF8.self)], !value.isEmpty {
            output.append(contentsOf: value.utf8)
        } else {
            output.append(contentsOf: token)
        }
        index = end
    }
    return output
}

/// Leftmost, non-overlapping literal replacement, naively.
func referenceLiteralRewrite(_ input: [UInt8], search: [UInt8], replacement: [UInt8]) -> [UInt8] {
    var output: [UInt8] = []
    var index = 0
    while index < input.count {
        if input[index...].starts(with: search) {
            output.append(contentsOf: replacement)
            index += search.count
        } else {
            output.append(input[index])
            index += 1
        }
    }
    return output
}

/// Deterministic pseudo-random numbers for generated cases.
struct TestRandom {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}
