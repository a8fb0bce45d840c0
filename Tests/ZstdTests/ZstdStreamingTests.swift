import StackCore
import StackProcess
import TestSupport
import Testing
import Zstd
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ZstdStreamingTests {
    /// §4.16-11 and the resume path: a RAM-like 256 MiB stream goes producer → pipe →
    /// compressor → pipe → decompressor → pipe → consumer, each on its own thread, all
    /// concurrently (nothing is ever stored uncompressed), and arrives byte-exact. The
    /// compressed stream is also teed to a file and checked with `zstd -t`.
    @Test func largeStreamThroughPipesRoundTrips() async throws {
        let size = 256 * 1024 * 1024
        let chunk = 1024 * 1024
        let image = RAMImage(seed: 31)
        let directory = try TemporaryDirectory.make(prefix: "zstd")
        defer { directory.remove() }
        let teePath = directory.file("stream.zst")

        let raw = try Pipe(), compressed = try Pipe(), restored = try Pipe()
        async let produced: Int = BlockingCall.run {
            ZstdFixtures.blockBrokenPipeSignal()
            defer { close(raw.writeEnd) }
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
            defer { buffer.deallocate() }
            var offset = 0
            while offset < size {
                image.fill(buffer, offset: offset)
                guard (try? POSIX.writeAll(raw.writeEnd, UnsafeRawBufferPointer(buffer), context: "producer")) != nil else { break }
                offset += chunk
            }
            return offset
        }
        async let compression: ZstdTransfer = BlockingCall.run {
            defer { close(raw.readEnd); close(compressed.writeEnd) }
            return try ZstdCompressor().compress(from: raw.readEnd, to: compressed.writeEnd)
        }
        async let decompression: ZstdTransfer = BlockingCall.run {
            ZstdFixtures.blockBrokenPipeSignal()
            defer { close(compressed.readEnd); close(restored.writeEnd) }
            // Tee: keep the compressed bytes for the CLI check while decoding them.
            let teeFile = try ZstdFixtures.openForWriting(teePath)
            defer { close(teeFile) }
            let tee = try Pipe()
            BlockingCall.detach {
                defer { close(tee.writeEnd) }
                var buffer = [UInt8](repeating: 0, count: 256 * 1024)
                while true {
                    let count = buffer.withUnsafeMutableBytes { read(compressed.readEnd, $0.baseAddress, $0.count) }
                    if count <= 0 { break }
                    try? POSIX.writeAll(teeFile, buffer.prefix(count), context: "tee file")
                    guard (try? POSIX.writeAll(tee.writeEnd, buffer.prefix(count), context: "tee pipe")) != nil else { break }
                }
            }
            defer { close(tee.readEnd) }
            return try ZstdDecompressor().decompress(from: tee.readEnd, to: restored.writeEnd)
        }
        async let consumed: (bytes: Int, mismatchAt: Int?) = BlockingCall.run {
            defer { close(restored.readEnd) }
            let received = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
            let expected = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
            defer { received.deallocate(); expected.deallocate() }
            var total = 0
            while true {
                // Fill a whole chunk (pipes return at most 64 KiB per read).
                var filled = 0
                while filled < chunk {
                    let count = read(restored.readEnd, received.baseAddress! + filled, chunk - filled)
                    if count <= 0 { break }
                    filled += count
                }
                if filled == 0 { return (total, nil) }
                guard total + filled <= size else { return (total + filled, total) }
                image.fill(expected, offset: total)
                if memcmp(received.baseAddress!, expected.baseAddress!, filled) != 0 { return (total + filled, total) }
                total += filled
                if filled < chunk { return (total, nil) }
            }
        }

        let (producedBytes, compressionResult, decompressionResult, consumedResult) = try await (produced, compression, decompression, consumed)
        #expect(producedBytes == size)
        #expect(compressionResult.bytesIn == UInt64(size))
        #expect(decompressionResult.bytesIn == compressionResult.bytesOut)
        #expect(decompressionResult.bytesOut == UInt64(size))
        #expect(consumedResult.bytes == size)
        #expect(consumedResult.mismatchAt == nil)
        #expect(compressionResult.bytesOut < UInt64(size) / 3, "a RAM-like image compresses well at level 1")
        try await ZstdFixtures.shell("zstd -q -t '\(teePath)'")
    }

    /// §5.4-25: decompressing to a regular file with `sparse` leaves zero runs as
    /// holes (far fewer blocks allocated) with identical content and size, including
    /// trailing zeros; without it the file is fully allocated.
    @Test func sparseOutputLeavesHolesForZeroRuns() async throws {
        let directory = try TemporaryDirectory.make(prefix: "zstd")
        defer { directory.remove() }
        var original = RAMImage(seed: 41, clusterPages: 16).bytes(count: 32 * 1024 * 1024)
        original += [UInt8](repeating: 0, count: 3 * 4096 + 100)   // trailing zeros, odd tail
        let zeroBytes = stride(from: 0, to: original.count - 4095, by: 4096).filter { start in
            original[start..<(start + 4096)].allSatisfy { $0 == 0 }
        }.count * 4096
        try ZstdFixtures.writeFile(directory.file("image.zst"), try ZstdCompressor().compress(original))

        for sparse in [true, false] {
            let (inputPath, outputPath) = (directory.file("image.zst"), directory.file("image-\(sparse)"))
            // Sparse: pre-existing content must not leak into the holes (plain writes
            // have ordinary write semantics, so that file starts empty).
            try ZstdFixtures.writeFile(outputPath, sparse ? [UInt8](repeating: 0xEE, count: original.count + 5000) : [])
            let (transfer, finalOffset) = try await BlockingCall.run {
                let input = try ZstdFixtures.openForReading(inputPath)
                let output = try POSIX.open(outputPath, O_WRONLY)
                defer { POSIX.close(input); POSIX.close(output) }
                let transfer = try ZstdDecompressor(sparse: sparse).decompress(from: input, to: output)
                return (transfer, lseek(output, 0, SEEK_CUR))
            }
            #expect(finalOffset == off_t(original.count))
            #expect(try ZstdFixtures.readFile(outputPath) == original, "sparse: \(sparse)")
            let status = try ZstdFixtures.fileStatus(outputPath)
            #expect(status.st_size == off_t(original.count))
            let allocated = Int(status.st_blocks) * 512
            if sparse {
                #expect(transfer.holeBytes > UInt64(zeroBytes) * 9 / 10, "most zero pages lie in runs of 64 KiB")
                #expect(transfer.holeBytes <= UInt64(zeroBytes))
                #expect(allocated <= original.count - Int(transfer.holeBytes) + 1024 * 1024, "allocated \(allocated) of \(original.count)")
            } else {
                #expect(transfer.holeBytes == 0)
                #expect(allocated >= original.count - 4096)
            }
        }
    }

    /// Progress is throttled (one call at most per interval plus a final one),
    /// monotonic, and ends with the totals.
    @Test func progressIsThrottledMonotonicAndFinal() async throws {
        let directory = try TemporaryDirectory.make(prefix: "zstd")
        defer { directory.remove() }
        let data = RAMImage(seed: 51).bytes(count: 16 * 1024 * 1024)
        try ZstdFixtures.writeFile(directory.file("in"), data)
        let path = directory.file("in")
        let (everyChunk, throttled) = try await BlockingCall.run { () throws -> ([ZstdProgress], [ZstdProgress]) in
            func run(_ interval: Duration) throws -> [ZstdProgress] {
                let input = try ZstdFixtures.openForReading(path)
                defer { POSIX.close(input) }
                let sink = open("/dev/null", O_WRONLY | O_CLOEXEC)
                defer { close(sink) }
                var reports: [ZstdProgress] = []
                try ZstdCompressor(progressInterval: interval, bufferSize: 256 * 1024)
                    .compress(from: input, to: sink) { reports.append($0) }
                return reports
            }
            return (try run(.zero), try run(.seconds(3600)))
        }
        #expect(everyChunk.count >= 64)
        #expect(zip(everyChunk, everyChunk.dropFirst()).allSatisfy { $0.bytesIn <= $1.bytesIn && $0.bytesOut <= $1.bytesOut })
        #expect(everyChunk.last?.bytesIn == UInt64(data.count))
        #expect(throttled.count == 1)
        #expect(throttled.first == everyChunk.last)
    }
}
