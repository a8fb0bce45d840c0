import CZstd
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Streams data into zstd frames: from a descriptor (a pipe carrying a QEMU migration
/// stream, or a file) to a descriptor, with no temporary uncompressed copy, or in
/// memory. The output is a standard zstd frame the `zstd` CLI reads (content checksum
/// on by default, content size recorded when the input is a regular file).
///
/// The descriptor API blocks the calling thread until the input ends: run it on its
/// own thread (e.g. `BlockingCall.run`), never on the cooperative pool.
public struct ZstdCompressor: Sendable {
    public enum Workers: Sendable, Equatable {
        /// Compress on the calling thread (libzstd's `nbWorkers = 0`).
        case none
        /// This many libzstd worker threads.
        case count(Int)
        /// One worker per online CPU, like `zstd -T0`.
        case allCores
    }

    /// zstd level; 1 (the default) matches the `zstd -1` the snapshot format was sized with.
    public var level: Int32
    public var workers: Workers
    /// Append a content checksum to each frame (the decoder verifies it).
    public var checksum: Bool
    /// Minimum time between two progress calls.
    public var progressInterval: Duration
    /// Fail with `.timedOut` when the input stays silent (or the output stays full) this
    /// long; nil waits forever. A peer that dies closes its end and ends the wait at once.
    public var idleTimeout: Duration?
    /// Read size; also bounds the compressed output written per call.
    public var bufferSize: Int

    public init(level: Int32 = 1, workers: Workers = .allCores, checksum: Bool = true,
                progressInterval: Duration = .milliseconds(500), idleTimeout: Duration? = .seconds(120),
                bufferSize: Int = 1 << 20) {
        self.level = level
        self.workers = workers
        self.checksum = checksum
        self.progressInterval = progressInterval
        self.idleTimeout = idleTimeout
        self.bufferSize = bufferSize
    }

    /// True when this libzstd was built with ZSTD_MULTITHREAD (Debian's is).
    public static var supportsMultithreading: Bool {
        let bounds = ZSTD_cParam_getBounds(ZSTD_c_nbWorkers)
        return ZSTD_isError(bounds.error) == 0 && bounds.upperBound > 0
    }

    /// Reads `input` until end of file and writes one zstd frame to `output`. Neither
    /// descriptor is closed. `progress` runs on this thread; throwing from it aborts.
    @discardableResult
    public func compress(from input: Int32, to output: Int32,
                         progress: ((ZstdProgress) throws -> Void)? = nil) throws -> ZstdTransfer {
        var source = DescriptorSource(fd: input, idleTimeout: idleTimeout)
        var sink = DescriptorSink(fd: output, idleTimeout: idleTimeout)
        return try withBrokenPipeSignalBlocked {
            try run(from: &source, to: &sink, pledgedSize: Self.remainingSize(ofRegularFile: input), progress: progress)
        }
    }

    /// One zstd frame holding `bytes`.
    public func compress(_ bytes: [UInt8]) throws -> [UInt8] {
        var source = ArraySource(bytes: bytes)
        var sink = ArraySink(limit: Int.max)
        _ = try run(from: &source, to: &sink, pledgedSize: UInt64(bytes.count), progress: nil)
        return sink.bytes
    }

    func run<Source: ByteSource, Sink: ByteSink>(from source: inout Source, to sink: inout Sink,
                                                  pledgedSize: UInt64?,
                                                  progress: ((ZstdProgress) throws -> Void)?) throws -> ZstdTransfer {
        guard let context = ZSTD_createCCtx() else {
            throw ZstdError(.library, "cannot create a zstd compression context (out of memory?)")
        }
        defer { ZSTD_freeCCtx(context) }
        try Self.check(ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level), "set compression level \(level)")
        try Self.check(ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, checksum ? 1 : 0), "enable checksums")
        let workerCount = try configureWorkers(context)
        if let pledgedSize {
            try Self.check(ZSTD_CCtx_setPledgedSrcSize(context, pledgedSize), "record the content size")
        }

        let inputBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 64)
        defer { inputBuffer.deallocate() }
        let outputSize = max(bufferSize, ZSTD_CStreamOutSize())
        let outputBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: outputSize, alignment: 64)
        defer { outputBuffer.deallocate() }

        var totals = ZstdProgress()
        var throttle = ProgressThrottle(interval: progressInterval, handler: progress)
        while true {
            let count = try source.read(into: inputBuffer)
            let directive = count == 0 ? ZSTD_e_end : ZSTD_e_continue
            totals.bytesIn += UInt64(count)
            var inBuffer = ZSTD_inBuffer(src: inputBuffer.baseAddress, size: count, pos: 0)
            var finished = false
            repeat {
                // With workers, libzstd blocks inside this call when it can neither take
                // input nor hand out output, so this loop does not spin.
                var outBuffer = ZSTD_outBuffer(dst: outputBuffer.baseAddress, size: outputSize, pos: 0)
                let remaining = ZSTD_compressStream2(context, &outBuffer, &inBuffer, directive)
                try Self.check(remaining, "compress")
                if outBuffer.pos > 0 {
                    try sink.write(UnsafeRawBufferPointer(rebasing: outputBuffer[0..<outBuffer.pos]))
                    totals.bytesOut += UInt64(outBuffer.pos)
                }
                finished = directive == ZSTD_e_end ? remaining == 0 : inBuffer.pos == inBuffer.size
            } while !finished
            if directive == ZSTD_e_end { break }
            try throttle.update(totals)
        }
        try sink.finish()
        try throttle.finish(totals)
        return ZstdTransfer(bytesIn: totals.bytesIn, bytesOut: totals.bytesOut, workers: workerCount)
    }

    /// Applies `workers`, falling back to single-threaded compression when this
    /// libzstd lacks multithreading. Returns the worker count in effect.
    private func configureWorkers(_ context: OpaquePointer) throws -> Int {
        let requested: Int
        switch workers {
        case .none: requested = 0
        case .count(let count): requested = max(0, count)
        case .allCores: requested = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        }
        guard requested > 0 else { return 0 }
        let bounds = ZSTD_cParam_getBounds(ZSTD_c_nbWorkers)
        guard ZSTD_isError(bounds.error) == 0, bounds.upperBound > 0 else { return 0 }
        let effective = min(Int32(clamping: requested), bounds.upperBound)
        let result = ZSTD_CCtx_setParameter(context, ZSTD_c_nbWorkers, effective)
        if ZSTD_isError(result) != 0 {
            guard ZSTD_getErrorCode(result) == ZSTD_error_parameter_unsupported else {
                throw ZstdError.library(result, while: "set \(effective) compression workers")
            }
            return 0
        }
        return Int(effective)
    }

    /// Bytes from the current offset to the end when `fd` is a regular file (lets the
    /// frame header record the content size, as the CLI does), else nil.
    static func remainingSize(ofRegularFile fd: Int32) -> UInt64? {
        var status = stat()
        guard fstat(fd, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else { return nil }
        let offset = lseek(fd, 0, SEEK_CUR)
        guard offset >= 0, status.st_size >= offset else { return nil }
        return UInt64(status.st_size - offset)
    }

    static func check(_ result: Int, _ what: String) throws {
        if ZSTD_isError(result) != 0 { throw ZstdError.library(result, while: what) }
    }
}
