#if canImport(Glibc)
import Glibc
private let systemRead = Glibc.read
private let systemWrite = Glibc.write
#elseif canImport(Darwin)
import Darwin
private let systemRead = Darwin.read
private let systemWrite = Darwin.write
#endif

// The (de)compression loops are generic over where bytes come from and go to, so
// the descriptor and in-memory APIs share one implementation (and one set of
// truncation/corruption checks).

protocol ByteSource {
    /// Fills a prefix of `buffer`; 0 means end of input.
    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

protocol ByteSink {
    mutating func write(_ bytes: UnsafeRawBufferPointer) throws
    /// Called once after the last write (sparse files set their final size here).
    mutating func finish() throws
}

/// Waits for a descriptor with `poll`, so a silent peer costs at most `idleTimeout`.
struct DescriptorWait {
    let fd: Int32
    let idleTimeout: Duration?
    let role: String

    func wait(for events: Int16) throws {
        guard let idleTimeout else { return }
        let milliseconds = Int32(clamping: idleTimeout.components.seconds * 1000 + idleTimeout.components.attoseconds / 1_000_000_000_000_000)
        var descriptor = pollfd(fd: fd, events: events, revents: 0)
        while true {
            let ready = poll(&descriptor, 1, milliseconds)
            if ready > 0 { return }       // readable, writable, hung up or error: the I/O call reports which
            if ready == 0 {
                throw ZstdError(.timedOut, "\(role) (fd \(fd)) made no progress for \(idleTimeout); is the process at the other end stuck?")
            }
            if errno != EINTR { throw ZstdError.systemCall("poll \(role) (fd \(fd))", errno: errno) }
        }
    }
}

struct DescriptorSource: ByteSource {
    let wait: DescriptorWait

    init(fd: Int32, idleTimeout: Duration?) {
        wait = DescriptorWait(fd: fd, idleTimeout: idleTimeout, role: "input")
    }

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            try wait.wait(for: Int16(POLLIN))
            let count = systemRead(wait.fd, buffer.baseAddress, buffer.count)
            if count >= 0 { return count }
            if errno == EINTR || errno == EAGAIN { continue }   // EAGAIN: non-blocking fd, poll again
            throw ZstdError.systemCall("read input (fd \(wait.fd))", errno: errno)
        }
    }
}

struct DescriptorSink: ByteSink {
    let wait: DescriptorWait

    init(fd: Int32, idleTimeout: Duration?) {
        wait = DescriptorWait(fd: fd, idleTimeout: idleTimeout, role: "output")
    }

    mutating func write(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            try wait.wait(for: Int16(POLLOUT))
            let count = systemWrite(wait.fd, bytes.baseAddress! + offset, bytes.count - offset)
            if count >= 0 {
                offset += count
                continue
            }
            if errno == EINTR || errno == EAGAIN { continue }
            if errno == EPIPE {
                throw ZstdError(.systemCall, "write output (fd \(wait.fd)): the reading end was closed before all data was written", errno: EPIPE)
            }
            throw ZstdError.systemCall("write output (fd \(wait.fd))", errno: errno)
        }
    }

    mutating func finish() throws {}
}

/// Writes a regular file leaving holes for runs of zero blocks (§5.4 #25: a RAM image
/// is mostly zero pages). Blocks are 4 KiB, aligned to file offsets; a zero run becomes
/// a hole only when it is at least `minimumHole` long, shorter ones are written with
/// their neighbours: every hole costs an extra write call and a file extent, so
/// scattered single zero pages would make the file slower to write and to read.
/// `finish` sets the size with ftruncate so trailing holes count. Whatever the file
/// held past its starting offset is discarded first, so holes read back as zeros.
struct SparseFileSink: ByteSink {
    static let blockSize = 4096
    /// Compared against per block; also the source for short zero runs carried across calls.
    private static let zeros = [UInt8](repeating: 0, count: 64 * 1024)
    let fd: Int32
    let minimumHole: Int
    /// File offset of the next byte to come.
    private(set) var offset: off_t
    /// Zero bytes at the end of what came so far, not written yet (offset - carriedZeros).
    private var carriedZeros = 0
    private(set) var skippedBytes: UInt64 = 0

    init(fd: Int32, minimumHole: Int) throws {
        let start = lseek(fd, 0, SEEK_CUR)
        guard start >= 0 else { throw ZstdError.systemCall("lseek output (fd \(fd))", errno: errno) }
        guard ftruncate(fd, start) == 0 else { throw ZstdError.systemCall("ftruncate output (fd \(fd))", errno: errno) }
        self.fd = fd
        self.minimumHole = max(Self.blockSize, (minimumHole + Self.blockSize - 1) / Self.blockSize * Self.blockSize)
        offset = start
    }

    mutating func write(_ bytes: UnsafeRawBufferPointer) throws {
        try Self.zeros.withUnsafeBytes { zeros in try write(bytes, zeros: zeros.baseAddress!) }
    }

    private mutating func write(_ bytes: UnsafeRawBufferPointer, zeros: UnsafeRawPointer) throws {
        let base = bytes.baseAddress!
        let chunkStart = offset
        // Not yet written: [pendingStart, current file position), which ends with
        // `zeroRun` zero bytes. It starts with the zeros carried from the last call.
        var pendingStart = chunkStart - off_t(carriedZeros)
        var zeroRun = carriedZeros
        var position = 0
        while position < bytes.count {
            let intoBlock = Int((chunkStart + off_t(position)) % off_t(Self.blockSize))
            let length = min(Self.blockSize - intoBlock, bytes.count - position)
            if length == Self.blockSize && memcmp(base + position, zeros, Self.blockSize) == 0 {
                zeroRun += length
            } else {
                if zeroRun >= minimumHole {
                    let here = chunkStart + off_t(position)
                    try writeData(base, chunkStart: chunkStart, from: pendingStart, to: here - off_t(zeroRun), zeros: zeros)
                    skippedBytes += UInt64(zeroRun)
                    pendingStart = here
                }
                zeroRun = 0            // a shorter run stays in the pending data
            }
            position += length
        }
        // Write the data; keep the trailing zero run pending, it may grow into a hole.
        let end = chunkStart + off_t(bytes.count)
        try writeData(base, chunkStart: chunkStart, from: pendingStart, to: end - off_t(zeroRun), zeros: zeros)
        carriedZeros = zeroRun
        offset = end
    }

    /// Writes the file range [from, to). Bytes before `chunkStart` are zeros carried
    /// over from the previous call (no longer in any buffer).
    private func writeData(_ base: UnsafeRawPointer, chunkStart: off_t, from: off_t, to: off_t, zeros: UnsafeRawPointer) throws {
        var cursor = from
        while cursor < min(chunkStart, to) {
            let count = Int(min(off_t(Self.zeros.count), min(chunkStart, to) - cursor))
            try writeRun(zeros, count: count, at: cursor)
            cursor += off_t(count)
        }
        if cursor < to {
            try writeRun(base + Int(cursor - chunkStart), count: Int(to - cursor), at: cursor)
        }
    }

    private func writeRun(_ start: UnsafeRawPointer, count: Int, at fileOffset: off_t) throws {
        var done = 0
        while done < count {
            let written = pwrite(fd, start + done, count - done, fileOffset + off_t(done))
            if written >= 0 {
                done += written
            } else if errno != EINTR {
                throw ZstdError.systemCall("write output file (fd \(fd)) at offset \(fileOffset + off_t(done))", errno: errno)
            }
        }
    }

    mutating func finish() throws {
        // A trailing zero run of any length is left to ftruncate.
        skippedBytes += UInt64(carriedZeros)
        carriedZeros = 0
        guard ftruncate(fd, offset) == 0 else { throw ZstdError.systemCall("ftruncate output (fd \(fd)) to \(offset) bytes", errno: errno) }
        // Leave the descriptor where a plain write would have: after the data.
        guard lseek(fd, offset, SEEK_SET) >= 0 else { throw ZstdError.systemCall("lseek output (fd \(fd))", errno: errno) }
    }
}

struct ArraySource: ByteSource {
    let bytes: [UInt8]
    var position = 0

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let count = min(buffer.count, bytes.count - position)
        bytes.withUnsafeBytes { source in
            buffer.baseAddress!.copyMemory(from: source.baseAddress! + position, byteCount: count)
        }
        position += count
        return count
    }
}

struct ArraySink: ByteSink {
    var bytes: [UInt8] = []
    let limit: Int

    mutating func write(_ chunk: UnsafeRawBufferPointer) throws {
        guard bytes.count + chunk.count <= limit else {
            throw ZstdError(.outputLimitExceeded, "decompressed data exceeds the limit of \(limit) bytes; raise the limit or stream to a descriptor")
        }
        bytes.append(contentsOf: chunk)
    }

    mutating func finish() throws {}
}

/// Runs `body` with SIGPIPE blocked on the calling thread, so a closed pipe shows up
/// as EPIPE (an error we report) instead of killing the process. A SIGPIPE raised by
/// our own write is consumed before the previous mask comes back.
func withBrokenPipeSignalBlocked<T>(_ body: () throws -> T) rethrows -> T {
    var pipeOnly = sigset_t()
    sigemptyset(&pipeOnly)
    sigaddset(&pipeOnly, SIGPIPE)
    var previous = sigset_t()
    pthread_sigmask(SIG_BLOCK, &pipeOnly, &previous)
    defer {
        if sigismember(&previous, SIGPIPE) != 1 {
            var pending = sigset_t()
            sigpending(&pending)
            if sigismember(&pending, SIGPIPE) == 1 {
                var immediately = timespec(tv_sec: 0, tv_nsec: 0)
                _ = sigtimedwait(&pipeOnly, nil, &immediately)
            }
        }
        pthread_sigmask(SIG_SETMASK, &previous, nil)
    }
    return try body()
}
