import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The end of a log file without reading all of it (a serial log can grow large).
public enum LogTail {
    /// At most `count` last lines from the final `window` bytes; empty when unreadable.
    public static func lastLines(of path: String, count: Int, window: Int = 64 * 1024) -> [String] {
        guard count > 0, let fd = try? POSIX.open(path, O_RDONLY) else { return [] }
        defer { POSIX.close(fd) }
        let size = lseek(fd, 0, SEEK_END)
        guard size > 0 else { return [] }
        let start = max(0, size - off_t(window))
        var buffer = [UInt8](repeating: 0, count: Int(size - start))
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, start) }
        guard n > 0 else { return [] }
        // Split bytes, not Characters: "\r\n" is one Character and would not split.
        var lines = buffer[0..<n].split(separator: 10, omittingEmptySubsequences: false)
            .map { String(decoding: $0.filter { $0 != 13 }, as: UTF8.self) }
        if start > 0 { lines.removeFirst() } // a partial first line
        if lines.last == "" { lines.removeLast() }
        return Array(lines.suffix(count))
    }
}
