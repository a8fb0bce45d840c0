#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One unit cut from a QMP/QGA byte stream.
enum FramedItem: Sendable, Equatable {
    /// One message without its line terminator (`\n` or `\r\n`).
    case line([UInt8])
    /// The guest agent's 0xFF sync delimiter: whatever preceded it on the current line
    /// was discarded.
    case delimiter
}

/// Cuts a byte stream into newline-terminated messages, whatever the read boundaries:
/// a message split across reads is reassembled, several messages in one read are all
/// returned. Pure (no I/O), so it is tested byte by byte.
///
/// With `recognizesDelimiter` (QGA), a 0xFF byte — which never occurs in UTF-8 JSON —
/// discards the partial line before it and is reported as `.delimiter`.
struct LineFramer {
    static let delimiterByte: UInt8 = 0xFF

    let maximumMessageSize: Int
    let recognizesDelimiter: Bool
    private var buffer: [UInt8] = []
    /// Start of the first unconsumed byte.
    private var start = 0
    /// Bytes in `start..<scanned` are known to hold no terminator.
    private var scanned = 0

    init(maximumMessageSize: Int, recognizesDelimiter: Bool) {
        self.maximumMessageSize = maximumMessageSize
        self.recognizesDelimiter = recognizesDelimiter
    }

    /// Bytes received but not yet returned as a message.
    var pendingByteCount: Int { buffer.count - start }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        compact()
        buffer.append(contentsOf: bytes.bindMemory(to: UInt8.self))
    }

    mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// The next complete item, nil when more bytes are needed. Throws when a message
    /// grows past `maximumMessageSize` (the stream cannot be resynchronised then).
    mutating func next() throws(QEMUControlError) -> FramedItem? {
        while true {
            let found: (index: Int, byte: UInt8)? = buffer.withUnsafeBufferPointer { all in
                guard scanned < all.count, let base = all.baseAddress else { return nil }
                let count = all.count - scanned
                let newline = memchr(base + scanned, 0x0A, count).map { UnsafeRawPointer($0) - UnsafeRawPointer(base) }
                if recognizesDelimiter {
                    let limit = (newline ?? all.count) - scanned
                    if limit > 0, let marker = memchr(base + scanned, Int32(LineFramer.delimiterByte), limit) {
                        return (UnsafeRawPointer(marker) - UnsafeRawPointer(base), LineFramer.delimiterByte)
                    }
                }
                return newline.map { ($0, 0x0A) }
            }
            guard let found else {
                scanned = buffer.count
                if buffer.count - start > maximumMessageSize {
                    throw QEMUControlError(.protocolViolation,
                                           "a message exceeds \(maximumMessageSize) bytes without a line end; the stream cannot be resynchronised")
                }
                return nil
            }
            if found.byte == LineFramer.delimiterByte {
                start = found.index + 1
                scanned = start
                return .delimiter
            }
            var end = found.index
            if end > start && buffer[end - 1] == 0x0D { end -= 1 }
            let lineStart = start
            start = found.index + 1
            scanned = start
            if end - lineStart > maximumMessageSize {
                throw QEMUControlError(.protocolViolation, "a message of \(end - lineStart) bytes exceeds the \(maximumMessageSize)-byte limit")
            }
            if isBlank(lineStart, end) { continue }
            return .line(Array(buffer[lineStart..<end]))
        }
    }

    private func isBlank(_ from: Int, _ to: Int) -> Bool {
        var index = from
        while index < to {
            switch buffer[index] {
            case 0x20, 0x09, 0x0D: index += 1
            default: return false
            }
        }
        return true
    }

    /// Drops consumed bytes once they dominate the buffer, so a long stream of small
    /// messages does not grow it and a large message is not copied once per read.
    private mutating func compact() {
        guard start > 0 else { return }
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
        } else if start >= 64 * 1024 && start >= buffer.count / 2 {
            buffer.removeSubrange(0..<start)
        } else {
            return
        }
        scanned -= start
        start = 0
    }
}
