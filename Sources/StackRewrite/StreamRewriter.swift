import CSystem
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one engine behind every rewrite: streams a file through a fixed buffer, finds
/// the rule's tokens (which may straddle two reads) and writes the replaced stream.
///
/// The buffer holds one read (`bufferSize`) plus room for a token carried over from
/// the previous read, so memory stays the same whatever the file size. One instance
/// per worker thread; it caches sentinel look-ups.
final class StreamRewriter {
    struct Result {
        /// Scan mode: file offset of the first token that would change the file.
        var firstChange: Int64?
        /// Scan mode: set when the whole file is in the buffer (this many bytes), so a
        /// rewrite can start from memory with `preloaded`.
        var bufferedWholeFile: Int?
        var replacements = 0
        var bytesRead: Int64 = 0
    }

    private enum Kind {
        case sentinels(SentinelValues)
        case literal(replacement: UnsafeRawBufferPointer?)
    }

    private let kind: Kind
    private let needle: UnsafeMutableRawBufferPointer
    private let storage: UnsafeMutableRawBufferPointer
    /// Bytes asked for per read.
    let readSize: Int
    /// Longest tail kept from one read to the next.
    private let carryLimit: Int
    private var batch: OutputBatch
    /// Sentinel name → bytes to insert (nil: leave the token).
    private var resolutions: [[UInt8]: UnsafeMutableRawBufferPointer?] = [:]
    /// Names of tokens without the `_` separator, which are never resolved.
    private var malformedTokens: Set<[UInt8]> = []
    /// A token longer than `carryLimit` reached the end of the previous read: the
    /// rest of its `[A-Z_]` run is passed through untouched.
    private var skippingNameRun = false

    init(rule: RewriteRule, bufferSize: Int, maximumTokenLength: Int) {
        let needleBytes: [UInt8]
        switch rule {
        case .sentinels(let values):
            needleBytes = RewriteRule.sentinelPrefix
            kind = .sentinels(values)
            carryLimit = maximumTokenLength
        case .literal(let search, let replacement):
            needleBytes = search
            if search == replacement {
                kind = .literal(replacement: nil)
            } else {
                let stable = UnsafeMutableRawBufferPointer.allocate(byteCount: max(replacement.count, 1), alignment: 1)
                stable.copyBytes(from: replacement)
                kind = .literal(replacement: UnsafeRawBufferPointer(rebasing: stable[0..<replacement.count]))
            }
            carryLimit = search.count - 1
        }
        needle = UnsafeMutableRawBufferPointer.allocate(byteCount: needleBytes.count, alignment: 1)
        needle.copyBytes(from: needleBytes)
        storage = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize + carryLimit, alignment: 64)
        readSize = bufferSize
        batch = OutputBatch()
    }

    deinit {
        if case .literal(let replacement?) = kind { replacement.deallocate() }
        for case let value? in resolutions.values { value.deallocate() }
        needle.deallocate()
        storage.deallocate()
        batch.deallocate()
    }

    /// The engine's buffer, for plain copies while no stream is in flight.
    var scratch: UnsafeMutableRawBufferPointer { storage }

    /// Scans `input` from its current offset (`offset`, `remaining` bytes to go) and
    /// stops at the first token that would change it. When the file was read by
    /// a single read and a change was found, the buffer still holds the whole file.
    func scan(input: Int32, offset: Int64, remaining: Int64, inputPath: () -> String) throws -> Result {
        try run(input: input, offset: offset, remaining: remaining, preloaded: 0, output: nil, inputPath: inputPath, outputPath: { "" })
    }

    /// Streams `remaining` bytes of `input` (plus `preloaded` bytes already at the
    /// start of the buffer) through the rule into `output`.
    func rewrite(input: Int32, offset: Int64, remaining: Int64, preloaded: Int = 0, output: Int32,
                 inputPath: () -> String, outputPath: () -> String) throws -> Result {
        try run(input: input, offset: offset, remaining: remaining, preloaded: preloaded, output: output, inputPath: inputPath, outputPath: outputPath)
    }

    /// Variable names seen so far, split by whether they had a value.
    func namesSeen() -> (replaced: Set<String>, unresolved: Set<String>) {
        var replaced = Set<String>(), unresolved = Set<String>()
        for (name, value) in resolutions {
            let text = String(decoding: name, as: UTF8.self)
            if value != nil { replaced.insert(text) } else { unresolved.insert(text) }
        }
        for token in malformedTokens { unresolved.insert(String(decoding: token, as: UTF8.self)) }
        return (replaced, unresolved)
    }

    private func run(input: Int32, offset: Int64, remaining: Int64, preloaded: Int, output: Int32?,
                     inputPath: () -> String, outputPath: () -> String) throws -> Result {
        var result = Result()
        let base = storage.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let needleStart = needle.baseAddress!
        let needleCount = needle.count
        var available = preloaded
        var unread = remaining
        var windowOffset = offset
        skippingNameRun = false
        while true {
            if unread > 0 {
                let n = try FileSystem.read(input, into: base + available, min(readSize, Int(clamping: unread)), path: inputPath())
                if n == 0 {
                    unread = 0 // the file shrank since fstat
                } else {
                    available += n
                    unread -= Int64(n)
                    result.bytesRead += Int64(n)
                }
            }
            let atEnd = unread == 0
            var position = 0
            var emitted = 0
            var straddling: Int?

            if skippingNameRun {
                while position < available && Self.isNameByte(base[position]) { position += 1 }
                if position < available || atEnd { skippingNameRun = false }
            }
            search: while position < available {
                let found = cs_find(base + position, available - position, needleStart, needleCount)
                if found < 0 { break }
                let match = position + found
                var end = match + needleCount
                let replacement: UnsafeRawBufferPointer?
                switch kind {
                case .literal(let fixed):
                    replacement = fixed
                case .sentinels(let values):
                    while end < available && Self.isNameByte(base[end]) { end += 1 }
                    if end == available && !atEnd {
                        if available - match <= carryLimit {
                            straddling = match
                        } else {
                            skippingNameRun = true
                            position = available
                        }
                        break search
                    }
                    // Longer tokens are verbatim wherever they fall relative to reads.
                    replacement = end - match > carryLimit ? nil
                        : resolve(token: UnsafeBufferPointer(start: base + match, count: end - match), values: values)
                }
                if let replacement {
                    guard let output else {
                        result.firstChange = windowOffset + Int64(match)
                        if windowOffset == 0 && unread == 0 { result.bufferedWholeFile = available }
                        return result
                    }
                    try batch.append(UnsafeRawPointer(base + emitted), match - emitted, to: output, path: outputPath)
                    try batch.append(replacement.baseAddress, replacement.count, to: output, path: outputPath)
                    emitted = end
                    result.replacements += 1
                }
                position = end
            }

            let safeEnd: Int
            if let straddling {
                safeEnd = straddling
            } else if atEnd {
                safeEnd = available
            } else {
                // The last needleCount-1 bytes may be the start of a token.
                safeEnd = max(position, available - (needleCount - 1))
            }
            let keepFrom = max(emitted, safeEnd)
            if let output {
                try batch.append(UnsafeRawPointer(base + emitted), keepFrom - emitted, to: output, path: outputPath)
                try batch.flush(to: output, path: outputPath)
            }
            if atEnd { return result }
            let carry = available - keepFrom
            if carry > 0 && keepFrom > 0 { memmove(base, base + keepFrom, carry) }
            windowOffset += Int64(keepFrom)
            available = carry
        }
    }

    /// The bytes to insert for `token` (prefix + name run), or nil to leave it.
    private func resolve(token: UnsafeBufferPointer<UInt8>, values: SentinelValues) -> UnsafeRawBufferPointer? {
        let prefixCount = needle.count
        if token.count == prefixCount { return nil } // the bare STACK_ENV_VAR_SENTINEL
        guard token[prefixCount] == UInt8(ascii: "_") else {
            malformedTokens.insert(Array(token))
            return nil
        }
        let name = Array(token[(prefixCount + 1)...])
        if let known = resolutions[name] { return known.map { UnsafeRawBufferPointer($0) } }
        var resolved: UnsafeMutableRawBufferPointer?
        if !name.isEmpty, let value = values.lookup(String(decoding: name, as: UTF8.self)), !value.isEmpty,
           !value.utf8.elementsEqual(token) {
            let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: value.utf8.count, alignment: 1)
            bytes.copyBytes(from: value.utf8)
            resolved = bytes
        }
        resolutions[name] = resolved
        return resolved.map { UnsafeRawBufferPointer($0) }
    }

    @inline(__always)
    private static func isNameByte(_ byte: UInt8) -> Bool {
        (byte &- 0x41) < 26 || byte == 0x5F
    }
}

/// Pieces of output gathered for one `writev`, so a file with many tokens costs a
/// few system calls rather than two per token.
struct OutputBatch {
    private static let capacity = 64
    private let vectors = UnsafeMutablePointer<iovec>.allocate(capacity: OutputBatch.capacity)
    private var count = 0

    func deallocate() { vectors.deallocate() }

    mutating func append(_ start: UnsafeRawPointer?, _ length: Int, to fd: Int32, path: () -> String) throws {
        guard length > 0, let start else { return }
        if count == Self.capacity { try flush(to: fd, path: path) }
        vectors[count] = iovec(iov_base: UnsafeMutableRawPointer(mutating: start), iov_len: length)
        count += 1
    }

    mutating func flush(to fd: Int32, path: () -> String) throws {
        var first = 0
        while first < count {
            let n = writev(fd, vectors + first, Int32(count - first))
            if n < 0 {
                if errno == EINTR { continue }
                let code = errno
                count = 0
                throw RewriteError.systemCall("write", path: path(), errno: code)
            }
            var written = n
            while first < count && written >= vectors[first].iov_len {
                written -= vectors[first].iov_len
                first += 1
            }
            if written > 0 {
                vectors[first].iov_base += written
                vectors[first].iov_len -= written
            }
        }
        count = 0
    }
}
