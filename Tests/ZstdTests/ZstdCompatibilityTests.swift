import StackCore
import StackProcess
import TestSupport
import Testing
import Zstd
#if canImport(Glibc)
import Glibc
#endif

/// Interoperability with the `zstd` CLI (1.5.x), the tool the snapshot format was
/// defined with (§4.16 step 11): each side reads the other's output byte for byte.
@Suite struct ZstdCompatibilityTests {
    static let original = RAMImage(seed: 11).bytes(count: 8 * 1024 * 1024 + 123)

    /// §4.16-11: our level-1 multithreaded output is a valid frame with checksum and
    /// content size, and `zstd -d` restores the input exactly.
    @Test func cliDecompressesOurOutput() async throws {
        let directory = try TemporaryDirectory.make(prefix: "zstd")
        defer { directory.remove() }
        try ZstdFixtures.writeFile(directory.file("ram"), Self.original)
        let (inputPath, outputPath) = (directory.file("ram"), directory.file("ram.zst"))
        let transfer = try await BlockingCall.run {
            let input = try ZstdFixtures.openForReading(inputPath)
            let output = try ZstdFixtures.openForWriting(outputPath)
            defer { POSIX.close(input); POSIX.close(output) }
            return try ZstdCompressor().compress(from: input, to: output)
        }
        #expect(transfer.bytesIn == UInt64(Self.original.count))
        #expect(transfer.bytesOut == UInt64(try ZstdFixtures.readFile(outputPath).count))
        #expect(transfer.bytesOut < transfer.bytesIn / 2)
        #expect(transfer.workers >= 1)

        try await ZstdFixtures.shell("zstd -q -d -c '\(outputPath)' > '\(directory.file("back"))' && cmp '\(inputPath)' '\(directory.file("back"))'")
        let listing = try await ZstdFixtures.shell("zstd -lv '\(outputPath)'")
        #expect(listing.contains("Check: XXH64"))
        #expect(listing.contains("Decompressed Size: ") && listing.contains("(\(Self.original.count) B)"))
    }

    /// Whatever the CLI writes (levels, threads, without checksum) we decode exactly.
    @Test(arguments: ["-1 -T0", "-19", "-3 --no-check", "-1 -T2 --content-size"])
    func weDecompressCLIOutput(flags: String) async throws {
        let directory = try TemporaryDirectory.make(prefix: "zstd")
        defer { directory.remove() }
        let (inputPath, compressedPath, outputPath) = (directory.file("ram"), directory.file("ram.zst"), directory.file("back"))
        try ZstdFixtures.writeFile(inputPath, Self.original)
        try await ZstdFixtures.shell("zstd -q \(flags) -c '\(inputPath)' > '\(compressedPath)'")
        let transfer = try await BlockingCall.run {
            let input = try ZstdFixtures.openForReading(compressedPath)
            let output = try ZstdFixtures.openForWriting(outputPath)
            defer { POSIX.close(input); POSIX.close(output) }
            return try ZstdDecompressor().decompress(from: input, to: output)
        }
        #expect(transfer.bytesOut == UInt64(Self.original.count))
        #expect(try ZstdFixtures.readFile(outputPath) == Self.original)
    }

    /// Concatenated frames (theirs and ours) and a skippable frame between them decode
    /// as one stream, both by us and by the CLI.
    @Test func multipleFramesDecodeAsOneStream() async throws {
        let directory = try TemporaryDirectory.make(prefix: "zstd")
        defer { directory.remove() }
        let first = Array(Self.original.prefix(1_000_000))
        let second = RAMImage(seed: 12).bytes(count: 700_001)
        try ZstdFixtures.writeFile(directory.file("second"), second)
        try await ZstdFixtures.shell("zstd -q -1 -c '\(directory.file("second"))' > '\(directory.file("second.zst"))'")
        let theirs = try ZstdFixtures.readFile(directory.file("second.zst"))
        let ours = try ZstdCompressor().compress(first)
        // Skippable frame: magic 0x184D2A5?, 4-byte little-endian length, payload.
        let skippable: [UInt8] = [0x50, 0x2A, 0x4D, 0x18, 5, 0, 0, 0, 1, 2, 3, 4, 5]
        let stream = ours + skippable + theirs + ours

        #expect(try ZstdDecompressor().decompress(stream) == first + second + first)
        try ZstdFixtures.writeFile(directory.file("multi.zst"), stream)
        try await ZstdFixtures.shell("zstd -q -d -c '\(directory.file("multi.zst"))' > '\(directory.file("multi"))'")
        #expect(try ZstdFixtures.readFile(directory.file("multi")) == first + second + first)
    }

    /// Without workers or on a build without multithreading the result is the same
    /// stream content; the transfer reports what was used.
    @Test func workerSettingsAllProduceValidFrames() throws {
        #expect(ZstdCompressor.supportsMultithreading, "Debian's libzstd is built with ZSTD_MULTITHREAD")
        let data = Array(Self.original.prefix(3_000_000))
        for workers in [ZstdCompressor.Workers.none, .count(1), .count(3), .allCores] {
            let compressed = try ZstdCompressor(workers: workers).compress(data)
            #expect(try ZstdDecompressor().decompress(compressed) == data, "\(workers)")
        }
        #expect(try ZstdCompressor(level: 19, workers: .none, checksum: false).compress([]).count > 0)
        #expect(try ZstdDecompressor().decompress(ZstdCompressor().compress([])) == [])
    }
}

/// Regression: when a frame ends exactly as the output buffer fills, decoding must
/// stop there (a further call would start looking for a next frame and the complete
/// input was reported as truncated; found by Benchmarks/zstd.sh on 256 MiB).
@Suite struct FrameEndAtBufferBoundaryTests {
    @Test(arguments: [64 * 1024, 1024 * 1024])
    func outputSizeMultipleOfBufferDecodes(bufferSize: Int) async throws {
        for multiple in 1...4 {
            let data = RAMImage(seed: UInt64(multiple), clusterPages: 4).bytes(count: multiple * bufferSize)
            let compressed = try ZstdCompressor().compress(data)
            let decompressor = ZstdDecompressor(bufferSize: bufferSize)
            #expect(try decompressor.decompress(compressed) == data, "\(multiple) × \(bufferSize)")
            let directory = try TemporaryDirectory.make(prefix: "zstd")
            defer { directory.remove() }
            let (inputPath, outputPath) = (directory.file("in.zst"), directory.file("out"))
            try ZstdFixtures.writeFile(inputPath, compressed)
            let transfer = try await BlockingCall.run {
                let input = try ZstdFixtures.openForReading(inputPath)
                let output = try ZstdFixtures.openForWriting(outputPath)
                defer { POSIX.close(input); POSIX.close(output) }
                return try decompressor.decompress(from: input, to: output)
            }
            #expect(transfer.bytesOut == UInt64(data.count))
        }
    }
}
