import StackCore
import StackRewrite
import Testing
import TestSupport

/// The engine streams files through a fixed buffer: tokens that straddle reads must be
/// found whatever the buffer size. Each case is checked against a naive reference.
@Suite struct StreamBoundaryTests {
    static let pieces = ["STACK_ENV_VAR_SENTINEL", "STACK_ENV_VAR_SENTINEL_", "STACK_ENV_VAR_SENTIN", "_", "A", "AB", "A_B", "B_",
                         "x", "1", "\n", "é", "\u{0}", "STACK_", "ENV_VAR_SENTINEL_A", " "]
    static let values = ["A": "1", "AB": "", "A_B": "long value with & and \\ and \n", "B": "βeta", "A_B_A": "Ω"]

    static func randomContent(_ random: inout TestRandom, pieces count: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        for _ in 0..<count { bytes.append(contentsOf: Array(pieces[random.below(pieces.count)].utf8)) }
        return bytes
    }

    /// Tokens straddling every possible read boundary, in place: buffer sizes from 1
    /// byte up, content shifted so the token starts at every offset of a read.
    @Test(arguments: [1, 2, 3, 5, 7, 8, 13, 21, 22, 23, 24, 31, 64])
    func tokensAcrossReadBoundariesAreReplacedInPlace(bufferSize: Int) async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        var cases: [[UInt8]] = []
        for shift in 0..<(bufferSize + 2) {
            let padding = [UInt8](repeating: UInt8(ascii: "."), count: shift)
            cases.append(padding + Array("STACK_ENV_VAR_SENTINEL_A_B;STACK_ENV_VAR_SENTINEL_A.STACK_ENV_VAR_SENTINEL_AB".utf8))
        }
        var random = TestRandom(seed: UInt64(bufferSize))
        for _ in 0..<30 { cases.append(Self.randomContent(&random, pieces: 40)) }
        for (index, content) in cases.enumerated() { try fixture.write("t/\(index).js", content) }

        let options = RewriteOptions(bufferSize: bufferSize, workers: 2)
        _ = try await TreeRewriter(rule: sentinels(Self.values), options: options).rewrite(directory: fixture.path("t"))
        for (index, content) in cases.enumerated() {
            #expect(try fixture.read("t/\(index).js") == referenceSentinelRewrite(content, values: Self.values), "case \(index)")
        }
    }

    /// The same through the fused copy (no scan pass first: every byte streams to the
    /// destination).
    @Test(arguments: [1, 4, 22, 23, 100])
    func tokensAcrossReadBoundariesAreReplacedWhileCopying(bufferSize: Int) async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        var random = TestRandom(seed: 1000 + UInt64(bufferSize))
        var cases: [[UInt8]] = []
        for _ in 0..<40 { cases.append(Self.randomContent(&random, pieces: 60)) }
        for (index, content) in cases.enumerated() { try fixture.write("src/\(index).js", content) }

        let options = RewriteOptions(bufferSize: bufferSize, workers: 2)
        let summary = try await TreeCopier(options: options).copy(from: fixture.path("src"), to: fixture.path("dst"), rewriting: sentinels(Self.values))
        #expect(summary.rewrite.filesScanned == cases.count)
        for (index, content) in cases.enumerated() {
            #expect(try fixture.read("dst/\(index).js") == referenceSentinelRewrite(content, values: Self.values), "case \(index)")
            #expect(try fixture.read("src/\(index).js") == content)
        }
    }

    /// Literal mode: the 64-byte key straddling every boundary, replaced by shorter,
    /// equal-length and longer strings.
    @Test(arguments: [1, 10, 63, 64, 65, 127])
    func literalAcrossReadBoundaries(bufferSize: Int) async throws {
        let placeholder = Array("00000000000000000000000000000000ffffffffffffffffffffffffffffffff".utf8)
        for replacement in ["k", String(repeating: "a1", count: 32), String(repeating: "Z", count: 100)] {
            let fixture = try Fixture()
            defer { fixture.remove() }
            var cases: [[UInt8]] = []
            for shift in 0..<min(bufferSize + 2, 70) {
                let padding = [UInt8](repeating: UInt8(ascii: "0"), count: shift)
                cases.append(padding + placeholder + Array("ff".utf8) + placeholder + placeholder + padding)
            }
            for (index, content) in cases.enumerated() { try fixture.write("t/\(index).rsc", content) }

            let rule = RewriteRule.literal(search: placeholder, replacement: Array(replacement.utf8))
            _ = try await TreeRewriter(rule: rule, options: RewriteOptions(bufferSize: bufferSize, workers: 1)).rewrite(directory: fixture.path("t"))
            for (index, content) in cases.enumerated() {
                let expected = referenceLiteralRewrite(content, search: placeholder, replacement: Array(replacement.utf8))
                #expect(try fixture.read("t/\(index).rsc") == expected, "case \(index) replacement \(replacement.count)")
            }
        }
    }

    /// Files far larger than the buffer, with the first change deep inside (the part
    /// before it is copied by the kernel, the rest streamed) or right at the start.
    @Test func largeFilesStreamThroughASmallBuffer() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        var random = TestRandom(seed: 7)
        var late = [UInt8](repeating: UInt8(ascii: "q"), count: 300_000)
        late += Self.randomContent(&random, pieces: 20_000)
        let early = Array("STACK_ENV_VAR_SENTINEL_A".utf8) + Self.randomContent(&random, pieces: 50_000)
        try fixture.write("t/late.js", late)
        try fixture.write("t/early.js", early)

        let options = RewriteOptions(bufferSize: 4096, workers: 2)
        let summary = try await TreeRewriter(rule: sentinels(Self.values), options: options).rewrite(directory: fixture.path("t"))
        #expect(summary.filesChanged == 2)
        #expect(try fixture.read("t/late.js") == referenceSentinelRewrite(late, values: Self.values))
        #expect(try fixture.read("t/early.js") == referenceSentinelRewrite(early, values: Self.values))
    }

    /// A token longer than `maximumTokenLength` cannot be held across reads; it is left
    /// verbatim (no variable has such a name) and costs no memory, and the tokens after
    /// it are still replaced.
    @Test func overlongTokenIsLeftVerbatim() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let long = "STACK_ENV_VAR_SENTINEL_" + String(repeating: "A", count: 5000)
        let content = Array("\(long) STACK_ENV_VAR_SENTINEL_A \(long)".utf8)
        try fixture.write("t/a.js", content)

        let options = RewriteOptions(bufferSize: 64, workers: 1, maximumTokenLength: 100)
        _ = try await TreeRewriter(rule: sentinels(["A": "1", String(repeating: "A", count: 5000): "never"]), options: options)
            .rewrite(directory: fixture.path("t"))
        #expect(try fixture.text("t/a.js") == "\(long) 1 \(long)")
    }
}
