import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A snapshot of `/proc/<pid>/stat` lines: who is whose parent, in which group and
/// session, and which processes are zombies. Used to find descendants that left their
/// process group (setsid, double fork) and were re-parented to us.
public enum ProcessTable {
    public struct Entry: Sendable, Hashable, CustomStringConvertible {
        public let pid: pid_t
        /// The kernel's short command name (`comm`, at most 15 bytes).
        public let name: String
        /// `R`, `S`, `D`, `Z`, `T`, … as in ps(1).
        public let state: Character
        public let parent: pid_t
        public let group: pid_t
        public let session: pid_t
        /// When the process started, in clock ticks after boot (`starttime`, field 22):
        /// with the pid (and the boot) it names one process, never a later one that got
        /// the same pid. nil when the line is too short to hold it.
        public let startTime: UInt64?

        public var isZombie: Bool { state == "Z" || state == "X" }
        public var leadsGroup: Bool { group == pid }
        public var description: String { "\(pid) (\(name)) \(state)" }
    }

    /// Every process visible in `procRoot`. Processes that vanish while we read are skipped.
    public static func entries(procRoot: String = "/proc") -> [Entry] {
        numericNames(in: procRoot).compactMap { entry(pid: $0, procRoot: procRoot) }
    }

    /// The processes whose parent is `parent` (by default: us), zombies included.
    /// Reads `/proc/<parent>/task/*/children` (one small file per thread) and falls back
    /// to scanning all of `/proc` on kernels built without those files.
    public static func children(of parent: pid_t = getpid(), procRoot: String = "/proc") -> [Entry] {
        let tasks = Path.join(procRoot, "\(parent)/task")
        var listed: Set<pid_t> = []
        var haveChildrenFiles = false
        for thread in numericNames(in: tasks) {
            guard let bytes = try? POSIX.readFile(Path.join(tasks, "\(thread)/children"), limit: 1 << 20) else { continue }
            haveChildrenFiles = true
            for field in bytes.split(separator: UInt8(ascii: " ")) {
                if let pid = pid_t(String(decoding: field, as: UTF8.self)) { listed.insert(pid) }
            }
        }
        guard haveChildrenFiles else {
            return entries(procRoot: procRoot).filter { $0.parent == parent }
        }
        return listed.sorted().compactMap { entry(pid: $0, procRoot: procRoot) }.filter { $0.parent == parent }
    }

    /// `false` when the calling process has no child at all, running or zombie: the
    /// kernel's answer (`waitid` with WNOWAIT reports ECHILD), without reading /proc.
    public static var callerHasChildren: Bool {
        var info = siginfo_t()
        while waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 {
            if errno == EINTR { continue }
            return errno != ECHILD
        }
        return true
    }

    public static func entry(pid: pid_t, procRoot: String = "/proc") -> Entry? {
        guard let bytes = try? POSIX.readFile(Path.join(procRoot, "\(pid)/stat"), limit: 4096) else { return nil }
        return parse(stat: bytes)
    }

    /// Parses `pid (comm) state ppid pgrp session … starttime …`. `comm` may contain
    /// spaces and parentheses, so the fields after it are located from the *last* `)`.
    public static func parse(stat bytes: [UInt8]) -> Entry? {
        guard let open = bytes.firstIndex(of: UInt8(ascii: "(")),
              let close = bytes.lastIndex(of: UInt8(ascii: ")")), open < close,
              let pid = pid_t(String(decoding: bytes[..<open], as: UTF8.self).trimmingSpaces)
        else { return nil }
        let name = String(decoding: bytes[(open + 1)..<close], as: UTF8.self)
        let rest = String(decoding: bytes[(close + 1)...], as: UTF8.self).split(separator: " ")
        guard rest.count >= 4, let state = rest[0].first,
              let parent = pid_t(rest[1]), let group = pid_t(rest[2]), let session = pid_t(rest[3])
        else { return nil }
        // Fields 3… follow the name: `starttime` is field 22.
        let startTime = rest.count > 19 ? UInt64(rest[19]) : nil
        return Entry(pid: pid, name: name, state: state, parent: parent, group: group, session: session, startTime: startTime)
    }

    /// Names of the numeric entries of a directory (`/proc`, `/proc/self/task`).
    static func numericNames(in directory: String) -> [pid_t] {
        guard let handle = opendir(directory) else { return [] }
        defer { closedir(handle) }
        var result: [pid_t] = []
        while let entry = readdir(handle) {
            var raw = entry.pointee.d_name
            let capacity = MemoryLayout.size(ofValue: raw)
            let name = withUnsafePointer(to: &raw) {
                $0.withMemoryRebound(to: CChar.self, capacity: capacity) { String(cString: $0) }
            }
            if let pid = pid_t(name), pid > 0 { result.append(pid) }
        }
        return result
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(self.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
