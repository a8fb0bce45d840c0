import StackCore
import StackRewrite
import Testing
import TestSupport

/// Literal mode (`rotate-secrets`: the current publishable key for a new one).
@Suite struct LiteralRewriteTests {
    static let placeholder = "00000000000000000000000000000000ffffffffffffffffffffffffffffffff"
    static let fresh = "5b2f0e5a4c1d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f"

    /// §2.4-7, §5.4 #28: every regular file whatever its extension (prerendered .html,
    /// .rsc, .json, none) gets the new key, not only `*.js`. This deliberately
    /// supersedes §2.4-8 ("non-.js files are left unchanged"), which is the weakness.
    @Test func replacesTheKeyInEveryFileWhateverItsExtension() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let names = ["apps/a.js", "apps/page.html", "apps/page.rsc", "apps/meta.json", "apps/NOEXT", "apps/deep/x/y.js.map"]
        for name in names { try fixture.write(name, "k=\"\(Self.placeholder)\";again:\(Self.placeholder)") }
        try fixture.write("apps/font.woff2", [0, 0xFF] + Array(Self.placeholder.utf8) + [0x80])
        try fixture.write("apps/other.js", "no key here")
        try fixture.setTimes("apps/other.js", seconds: 1_400_000_000)

        let summary = try await TreeRewriter(rule: .literal(Self.placeholder, Self.fresh)).rewrite(directory: fixture.path("apps"))
        for name in names { #expect(try fixture.text(name) == "k=\"\(Self.fresh)\";again:\(Self.fresh)", "\(name)") }
        #expect(try fixture.read("apps/font.woff2") == [0, 0xFF] + Array(Self.fresh.utf8) + [0x80])
        #expect(try fixture.status("apps/other.js").modificationTime == (1_400_000_000, 0))
        #expect(summary.filesChanged == names.count + 1)
        #expect(summary.tokensReplaced == 2 * names.count + 1)
        #expect(summary.filesScanned == names.count + 2)
    }

    /// §5.4 #29: rotating again works from the current key (the caller passes the key
    /// now in the files), and a stale search finds nothing and changes nothing (§2.4-10).
    @Test func rotatingTwiceMovesToTheNewestKey() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("apps/a.js", "pk=\(Self.placeholder)")
        let newest = String(repeating: "ab", count: 32)

        _ = try await TreeRewriter(rule: .literal(Self.placeholder, Self.fresh)).rewrite(directory: fixture.path("apps"))
        let stale = try await TreeRewriter(rule: .literal(Self.placeholder, newest)).rewrite(directory: fixture.path("apps"))
        #expect(stale.filesChanged == 0)
        let second = try await TreeRewriter(rule: .literal(Self.fresh, newest)).rewrite(directory: fixture.path("apps"))
        #expect(second.filesChanged == 1)
        #expect(try fixture.text("apps/a.js") == "pk=\(newest)")
    }

    /// §2.4-9: replacing the key by itself modifies no file.
    @Test func replacingByTheSameBytesModifiesNothing() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("apps/a.js", "pk=\(Self.placeholder)")
        try fixture.setTimes("apps/a.js", seconds: 1_300_000_000)
        let inode = try fixture.status("apps/a.js").st_ino

        let summary = try await TreeRewriter(rule: .literal(Self.placeholder, Self.placeholder)).rewrite(directory: fixture.path("apps"))
        #expect(summary.filesChanged == 0)
        #expect(try fixture.status("apps/a.js").st_ino == inode)
        #expect(try fixture.status("apps/a.js").modificationTime == (1_300_000_000, 0))
    }

    /// Replacements of other lengths, and leftmost non-overlapping matches (as sed's s///g).
    @Test func replacementsOfAnyLengthAndNonOverlappingMatches() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("t/a", "aaaaa|aa")
        try fixture.write("t/b", "xKEYyKEYz")
        _ = try await TreeRewriter(rule: .literal("aa", "B")).rewrite(directory: fixture.path("t"))
        #expect(try fixture.text("t/a") == "BBa|B")
        _ = try await TreeRewriter(rule: .literal("KEY", "a much longer value")).rewrite(directory: fixture.path("t"))
        #expect(try fixture.text("t/b") == "xa much longer valueya much longer valuez")
        _ = try await TreeRewriter(rule: .literal("a much longer value", "")).rewrite(directory: fixture.path("t"))
        #expect(try fixture.text("t/b") == "xyz")
    }

    /// An empty search string is refused before anything is read.
    @Test func emptySearchIsRejected() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("t/a", "abc")
        let error = try await #require(throws: RewriteError.self) {
            try await TreeRewriter(rule: .literal("", "x")).rewrite(directory: fixture.path("t"))
        }
        #expect(error.code == .invalidRule)
        #expect(try fixture.text("t/a") == "abc")
    }

    /// Durability modes fsync/syncfs and still produce the same result.
    @Test(arguments: [RewriteOptions.Durability.syncFileSystemAtEnd, .fsyncEachFile])
    func durableModesProduceTheSameResult(durability: RewriteOptions.Durability) async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("apps/a.js", "pk=\(Self.placeholder)", mode: 0o600)
        let summary = try await TreeRewriter(rule: .literal(Self.placeholder, Self.fresh), options: RewriteOptions(durability: durability))
            .rewrite(directory: fixture.path("apps"))
        #expect(summary.filesChanged == 1)
        #expect(try fixture.text("apps/a.js") == "pk=\(Self.fresh)")
        #expect(try fixture.status("apps/a.js").permissions == 0o600)
    }
}

/// Keys never leak through logging a rule.
@Suite struct RewriteRuleDescriptionTests {
    @Test func literalRuleDescriptionHidesTheBytes() {
        let rule = RewriteRule.literal(LiteralRewriteTests.placeholder, LiteralRewriteTests.fresh)
        #expect("\(rule)" == "literal(<64 bytes> → <64 bytes>)")
        #expect(!String(reflecting: rule).contains(LiteralRewriteTests.fresh))
        var dumped = ""
        dump(rule, to: &dumped)
        #expect(!dumped.contains(LiteralRewriteTests.fresh))
    }
}
