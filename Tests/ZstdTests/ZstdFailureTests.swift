import StackCore
import StackProcess
import TestSupport
import Testing
import Zstd
#if canImport(Glibc)
import Glibc
#endif

/// Damaged input is an error naming the problem, never a silently short output
/// (§4.19-17 relies on this to fall back from a corrupt `.zst`).
@Suite struct ZstdFailureTests {
    static let original = RAMImage(seed: 21).bytes(count: 2 * 1024 * 1024)
    static let compressed = try! ZstdCompressor().compress(original)

    /// Cut anywhere (inside the header, a block, the checksum) ⇒ `.truncatedInput`,
    /// through the descriptor API as well as in memory; the CLI agrees it is broken.
    @Test(arguments: [3, 20, compressed.count / 2, compressed.count - 5, compressed.count - 1])
    func truncatedFrameIsAnError(length: Int) async throws {
        let truncated = Array(Self.compressed.prefix(length))
        let inMemory = try #require(throws: ZstdError.self) { try ZstdDecompressor().decompress(truncated) }
        #expect(inMemory.code == .truncatedInput)
        #expect(inMemory.message.contains("truncated"))

        let directory = try TemporaryDirectory.make(prefix: "zstd")
        defer { directory.remove() }
        let (inputPath, outputPath) = (directory.file("cut.zst"), directory.file("out"))
        try ZstdFixtures.writeFile(inputPath, truncated)
        let result = await BlockingCall.run { () -> Result<ZstdTransfer, ZstdError> in
            do {
                let input = try ZstdFixtures.openForReading(inputPath)
                let output = try ZstdFixtures.openForWriting(outputPath)
                defer { POSIX.close(input); POSIX.close(output) }
                return .success(try ZstdDecompressor(sparse: true).decompress(from: input, to: output))
            } catch let error as ZstdError {
                return .failure(error)
            } catch {
                return .failure(ZstdError(.library, "unexpected \(error)"))
            }
        }
        #expect(throws: ZstdError.self) { try result.get() }
        if case .failure(let error) = result { #expect(error.code == .truncatedInput) }
        let cli = try await TestShell.output("zstd -q -t '\(inputPath)'", environment: ["PATH": Command.defaultSearchPath])
        #expect(!cli.status.isSuccess)
    }

    @Test func emptyInputIsAnError() throws {
        let error = try #require(throws: ZstdError.self) { try ZstdDecompressor().decompress([]) }
        #expect(error.code == .truncatedInput)
    }

    /// Not zstd at all, garbage after a valid frame, a flipped byte in the payload:
    /// `.corruptInput` with libzstd's error name.
    @Test func garbageAndCorruptionAreErrors() throws {
        var generator = SystemRandomNumberGenerator()
        let garbage = (0..<100_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let notZstd = try #require(throws: ZstdError.self) { try ZstdDecompressor().decompress(garbage) }
        #expect(notZstd.code == .corruptInput)
        #expect(notZstd.zstdErrorName == "Unknown frame descriptor")

        let trailing = try #require(throws: ZstdError.self) { try ZstdDecompressor().decompress(Self.compressed + Array("garbage!".utf8)) }
        #expect(trailing.code == .corruptInput)

        var flipped = Self.compressed
        flipped[flipped.count / 2] ^= 0x55
        let corrupt = try #require(throws: ZstdError.self) { try ZstdDecompressor().decompress(flipped) }
        #expect(corrupt.code == .corruptInput)
        #expect(corrupt.zstdErrorName != nil)
    }

    /// Flipping a byte of the stored checksum itself is caught by verification.
    @Test func wrongChecksumIsDetected() throws {
        var damaged = Self.compressed
        damaged[damaged.count - 1] ^= 0x01
        let error = try #require(throws: ZstdError.self) { try ZstdDecompressor().decompress(damaged) }
        #expect(error.code == .corruptInput)
        #expect(error.zstdErrorName == "Restored data doesn't match checksum")
    }

    @Test func outputLimitIsEnforcedInMemory() throws {
        let error = try #require(throws: ZstdError.self) { try ZstdDecompressor().decompress(Self.compressed, limit: 1_000_000) }
        #expect(error.code == .outputLimitExceeded)
    }

    /// A reader that goes away ⇒ EPIPE as an error; the process survives (SIGPIPE blocked).
    @Test func closedReaderGivesBrokenPipeError() async throws {
        let pipe = try Pipe()
        close(pipe.readEnd)
        let compressed = Self.compressed
        let result = await BlockingCall.run { () -> ZstdError? in
            defer { close(pipe.writeEnd) }
            let source = try? Pipe()
            guard let source else { return nil }
            // Feed the compressed stream from another thread through a pipe.
            BlockingCall.detach {
                ZstdFixtures.blockBrokenPipeSignal()
                try? POSIX.writeAll(source.writeEnd, compressed, context: "feeder")
                close(source.writeEnd)
            }
            defer { close(source.readEnd) }
            do {
                try ZstdDecompressor().decompress(from: source.readEnd, to: pipe.writeEnd)
                return nil
            } catch let error as ZstdError {
                return error
            } catch {
                return nil
            }
        }
        let error = try #require(result)
        #expect(error.code == .systemCall)
        #expect(error.errno == EPIPE)
    }

    /// A writer that holds its end open but sends nothing ⇒ `.timedOut` after the idle timeout.
    @Test func silentInputTimesOut() async throws {
        let pipe = try Pipe()
        defer { close(pipe.writeEnd) }
        let clock = ContinuousClock()
        let started = clock.now
        let result = await BlockingCall.run { () -> ZstdError? in
            defer { close(pipe.readEnd) }
            let sink = open("/dev/null", O_WRONLY | O_CLOEXEC)
            defer { close(sink) }
            do {
                try ZstdCompressor(idleTimeout: .milliseconds(200)).compress(from: pipe.readEnd, to: sink)
                return nil
            } catch let error as ZstdError {
                return error
            } catch {
                return nil
            }
        }
        #expect(result?.code == .timedOut)
        // Generous: only proves the wait ended by the timeout (the writer never closes
        // its end before the call returns), on a loaded 2-core machine.
        #expect(clock.now - started < .seconds(60))
    }

    /// A progress handler can abort a transfer; its error comes back unchanged.
    @Test func throwingProgressHandlerAborts() async throws {
        struct Stop: Error {}
        let directory = try TemporaryDirectory.make(prefix: "zstd")
        defer { directory.remove() }
        try ZstdFixtures.writeFile(directory.file("in"), Self.original)
        let path = directory.file("in")
        let aborted = await BlockingCall.run { () -> Bool in
            guard let input = try? ZstdFixtures.openForReading(path) else { return false }
            defer { close(input) }
            let sink = open("/dev/null", O_WRONLY | O_CLOEXEC)
            defer { close(sink) }
            do {
                try ZstdCompressor(progressInterval: .zero, bufferSize: 64 * 1024).compress(from: input, to: sink) { _ in throw Stop() }
                return false
            } catch {
                return error is Stop
            }
        }
        #expect(aborted)
    }
}
