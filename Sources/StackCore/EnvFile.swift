#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A strict `KEY=VALUE` file, as Docker's `--env-file` reads it, never evaluated.
///
/// Grammar, one item per line (`\n`; the last line may lack it):
/// - blank (spaces and tabs only) or a comment (`#` after optional spaces/tabs);
/// - `KEY=VALUE` where KEY matches `[A-Za-z_][A-Za-z0-9_]*` and VALUE is every byte
///   after the first `=` up to the end of the line, taken literally: no quotes, no
///   escapes, no `$` expansion, no trimming.
///
/// Anything else (`export X=1`, `X = 1`, a bare word, a carriage return, a NUL byte,
/// invalid UTF-8) is an error naming the source and line. Error messages never repeat
/// the offending text: env files carry secrets.
public struct EnvFile: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var key: String
        public var value: String
        /// 1-based line number in the source; 0 for entries built in code.
        public var line: Int

        public init(key: String, value: String, line: Int = 0) {
            self.key = key
            self.value = value
            self.line = line
        }
    }

    public var entries: [Entry]

    public init(entries: [Entry] = []) {
        self.entries = entries
    }

    public init(_ pairs: KeyValuePairs<String, String>) {
        self.entries = pairs.map { Entry(key: $0.key, value: $0.value) }
    }

    /// The value of the last assignment to `key` (later lines win, as with Docker).
    public subscript(key: String) -> String? {
        entries.last(where: { $0.key == key })?.value
    }

    /// Keys in first-seen order, each once.
    public var keys: [String] {
        var seen = Set<String>()
        return entries.compactMap { seen.insert($0.key).inserted ? $0.key : nil }
    }

    /// Keys assigned more than once.
    public var duplicateKeys: [String] {
        var counts: [String: Int] = [:]
        for entry in entries { counts[entry.key, default: 0] += 1 }
        return keys.filter { counts[$0, default: 0] > 1 }
    }

    /// Last-wins dictionary view.
    public var values: [String: String] {
        var result: [String: String] = [:]
        for entry in entries { result[entry.key] = entry.value }
        return result
    }

    // MARK: parsing

    /// Parses `bytes`; `source` names the file in errors.
    public static func parse(_ bytes: some Collection<UInt8>, source: String) throws -> EnvFile {
        var entries: [Entry] = []
        var lineNumber = 0
        var lineStart = bytes.startIndex
        while lineStart != bytes.endIndex {
            lineNumber += 1
            let lineEnd = bytes[lineStart...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.endIndex
            if let entry = try parseLine(bytes[lineStart..<lineEnd], number: lineNumber, source: source) {
                entries.append(entry)
            }
            lineStart = lineEnd == bytes.endIndex ? lineEnd : bytes.index(after: lineEnd)
        }
        return EnvFile(entries: entries)
    }

    /// Reads and parses the file at `path` (at most `limit` bytes).
    public static func read(path: String, limit: Int = 1024 * 1024) throws -> EnvFile {
        try parse(POSIX.readFile(path, limit: limit), source: path)
    }

    private static func parseLine(_ line: some Collection<UInt8>, number: Int, source: String) throws -> Entry? {
        func fail(_ problem: String) -> StackError {
            StackError(.invalidEnvFile, "\(source):\(number): \(problem)")
        }
        if line.contains(0) { throw fail("contains a NUL byte") }
        if line.contains(UInt8(ascii: "\r")) { throw fail("contains a carriage return (CRLF line endings are not accepted)") }
        let content = line.drop(while: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") })
        if content.isEmpty { return nil }
        if content.first == UInt8(ascii: "#") { return nil }
        if content.startIndex != line.startIndex { throw fail("starts with whitespace; expected KEY=VALUE") }
        guard let equals = line.firstIndex(of: UInt8(ascii: "=")) else {
            throw fail("expected KEY=VALUE, found no '='")
        }
        let keyBytes = line[line.startIndex..<equals]
        guard isValidKey(keyBytes) else {
            throw fail("expected KEY=VALUE with KEY matching [A-Za-z_][A-Za-z0-9_]*")
        }
        let valueBytes = line[line.index(after: equals)...]
        guard let value = String(validating: valueBytes, as: UTF8.self) else {
            throw fail("value is not valid UTF-8")
        }
        return Entry(key: String(decoding: keyBytes, as: UTF8.self), value: value, line: number)
    }

    /// `[A-Za-z_][A-Za-z0-9_]*`, the portable environment-variable name.
    public static func isValidKey(_ key: some Collection<UInt8>) -> Bool {
        guard let first = key.first, isNameStart(first) else { return false }
        return key.dropFirst().allSatisfy { isNameStart($0) || ($0 >= 0x30 && $0 <= 0x39) }
    }

    public static func isValidKey(_ key: String) -> Bool { isValidKey(Array(key.utf8)) }

    private static func isNameStart(_ byte: UInt8) -> Bool {
        (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == UInt8(ascii: "_")
    }

    // MARK: rendering and writing

    /// The file's bytes, one `KEY=VALUE\n` per entry. Throws when a key is invalid or a
    /// value holds a newline, carriage return or NUL (the format cannot carry them).
    public func rendered() throws -> [UInt8] {
        var out: [UInt8] = []
        for entry in entries {
            guard EnvFile.isValidKey(entry.key) else {
                throw StackError(.unrepresentableValue, "cannot write env key '\(entry.key)': must match [A-Za-z_][A-Za-z0-9_]*")
            }
            if entry.value.utf8.contains(where: { $0 == 0 || $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) {
                throw StackError(.unrepresentableValue, "cannot write \(entry.key): its value holds a newline, carriage return or NUL byte")
            }
            out.append(contentsOf: entry.key.utf8)
            out.append(UInt8(ascii: "="))
            out.append(contentsOf: entry.value.utf8)
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }

    /// Writes the file atomically (temp + fsync + rename) with `mode`.
    public func write(to path: String, mode: mode_t = 0o600) throws {
        let bytes = try rendered()
        try AtomicFile(path: path, mode: mode).write(bytes)
    }
}
