import CZstd
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Streams zstd data back out: from a file or pipe to a descriptor (a pipe feeding a
/// QEMU incoming migration, or the `.savevm.raw` cache file), or in memory.
/// Concatenated frames (`cat a.zst b.zst`) decode as one stream, skippable frames are
/// skipped, checksums are verified, and input that ends inside a frame, or holds no
/// frame, is an error, never a silently short output.
///
/// The descriptor API blocks the calling thread: run it on its own thread.
public struct ZstdDecompressor: Sendable {
    /// When the output is a regular file, leave runs of all-zero 4 KiB blocks as holes
    /// (§5.4 #25) and set the final size with ftruncate. The file is truncated at its
    /// current offset first. Ignored for pipes and other non-regular outputs.
    public var sparse: Bool
    /// Shortest zero run (rounded up to 4 KiB) left as a hole; shorter runs are written,
    /// since each hole costs a write call and fragments the file.
    public var minimumHoleSize: Int
    public var progressInterval: Duration
    /// Fail with `.timedOut` when input stays silent or output stays blocked this long; nil waits forever.
    public var idleTimeout: Duration?
    /// Read size and decompressed bytes written per call.
    public var bufferSize: Int

    public init(sparse: Bool = false, minimumHoleSize: Int = 32 * 1024, progressInterval: Duration = .milliseconds(500),
                idleTimeout: Duration? = .seconds(120), bufferSize: Int = 1 << 20) {
        self.sparse = sparse
        self.minimumHoleSize = minimumHoleSize
        self.progressInterval = progressInterval
        self.idleTimeout = idleTimeout
        self.bufferSize = bufferSize
    }

    /// Decodes everything `input` holds until end of file into `output`. Neither
    /// descriptor is closed. Decoding and writing overlap (a writer thread, joined
    /// before this returns). `progress` runs on this thread; throwing from it aborts.
    @discardableResult
    public func decompress(from input: Int32, to output: Int32,
                           progress: ((ZstdProgress) throws -> Void)? = nil) throws -> ZstdTransfer {
        var source = DescriptorSource(fd: input, idleTimeout: idleTimeout)
        return try withBrokenPipeSignalBlocked {
            let outputSize = max(bufferSize, ZSTD_DStreamOutSize())
            if sparse && Self.isRegularFile(output) {
                let writer = try WriteBehind(sink: try SparseFileSink(fd: output, minimumHole: minimumHoleSize), bufferSize: outputSize)
                var output = writer
                var transfer = try run(from: &source, to: &output, progress: progress)
                transfer.holeBytes = writer.sink.skippedBytes
                return transfer
            }
            var output = try WriteBehind(sink: DescriptorSink(fd: output, idleTimeout: idleTimeout), bufferSize: outputSize)
            return try run(from: &source, to: &output, progress: progress)
        }
    }

    /// The concatenated content of every frame in `bytes`, at most `limit` bytes.
    public func decompress(_ bytes: [UInt8], limit: Int = 1 << 30) throws -> [UInt8] {
        var source = ArraySource(bytes: bytes)
        var output = DirectOutput(sink: ArraySink(limit: limit), bufferSize: max(bufferSize, ZSTD_DStreamOutSize()))
        _ = try run(from: &source, to: &output, progress: nil)
        return output.sink.bytes
    }

    func run<Source: ByteSource, Output: DecodedOutput>(from source: inout Source, to output: inout Output,
                                                        progress: ((ZstdProgress) throws -> Void)?) throws -> ZstdTransfer {
        do {
            let transfer = try decode(from: &source, to: &output, progress: progress)
            try output.finish()
            try ProgressThrottle(interval: progressInterval, handler: progress).finish(ZstdProgress(bytesIn: transfer.bytesIn, bytesOut: transfer.bytesOut))
            return transfer
        } catch {
            output.abandon()
            throw error
        }
    }

    private func decode<Source: ByteSource, Output: DecodedOutput>(from source: inout Source, to output: inout Output,
                                                                   progress: ((ZstdProgress) throws -> Void)?) throws -> ZstdTransfer {
        guard let context = ZSTD_createDCtx() else {
            throw ZstdError(.library, "cannot create a zstd decompression context (out of memory?)")
        }
        defer { ZSTD_freeDCtx(context) }
        let inputBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 64)
        defer { inputBuffer.deallocate() }

        var totals = ZstdProgress()
        var throttle = ProgressThrottle(interval: progressInterval, handler: progress)
        // 0 once a frame is complete and flushed; non-zero while inside a frame.
        var frameState = 0
        // Bytes decoded into the current output buffer; full buffers are committed, so
        // writes are large and aligned (which sparse output needs for its holes).
        var filled = 0
        while true {
            let count = try source.read(into: inputBuffer)
            if count == 0 { break }
            totals.bytesIn += UInt64(count)
            var inBuffer = ZSTD_inBuffer(src: inputBuffer.baseAddress, size: count, pos: 0)
            var outputFull = false
            // Keep calling while input remains, or while the last call filled the output
            // inside a frame (more decoded data may be waiting in the context). Not after
            // a frame ended (state 0): another call would start parsing a next frame
            // and make a complete input look truncated.
            while inBuffer.pos < inBuffer.size || (outputFull && frameState != 0) {
                let buffer = output.currentBuffer
                var outBuffer = ZSTD_outBuffer(dst: buffer.baseAddress, size: buffer.count, pos: filled)
                frameState = ZSTD_decompressStream(context, &outBuffer, &inBuffer)
                if ZSTD_isError(frameState) != 0 {
                    throw ZstdError.library(frameState, while: "decompress at input offset ~\(totals.bytesIn - UInt64(count) + UInt64(inBuffer.pos))")
                }
                totals.bytesOut += UInt64(outBuffer.pos - filled)
                filled = outBuffer.pos
                outputFull = filled == buffer.count
                if outputFull {
                    try output.commit(filled)
                    filled = 0
                }
            }
            try throttle.update(totals)
        }
        if filled > 0 { try output.commit(filled) }
        guard totals.bytesIn > 0 else {
            throw ZstdError(.truncatedInput, "the compressed input is empty: no zstd frame to decompress")
        }
        guard frameState == 0 else {
            throw ZstdError(.truncatedInput, "the compressed input ends inside a zstd frame after \(totals.bytesIn) bytes (\(totals.bytesOut) bytes decoded): the file is truncated")
        }
        return ZstdTransfer(bytesIn: totals.bytesIn, bytesOut: totals.bytesOut)
    }

    static func isRegularFile(_ fd: Int32) -> Bool {
        var status = stat()
        return fstat(fd, &status) == 0 && (status.st_mode & S_IFMT) == S_IFREG
    }
}
