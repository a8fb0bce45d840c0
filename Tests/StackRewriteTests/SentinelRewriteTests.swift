import StackCore
import StackRewrite
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Sentinel substitution in place (`TreeRewriter` with `.sentinels`), on real files.
@Suite struct SentinelRewriteTests {
    /// §1.4-28, §5.4 #36: the longest token wins, so a name that is a prefix of another
    /// never rewrites part of the longer token (upstream's per-token sed corrupted these).
    @Test func longestTokenWinsOverPrefixCollidingName() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("apps/a.js", "[STACK_ENV_VAR_SENTINEL_FOO][STACK_ENV_VAR_SENTINEL_FOO_BAR][STACK_ENV_VAR_SENTINEL_FOO_BARX]")
        try fixture.write("apps/b.js", "only FOO set: STACK_ENV_VAR_SENTINEL_FOO_BAR and STACK_ENV_VAR_SENTINEL_FOO.")

        let summary = try await TreeRewriter(rule: sentinels(["FOO": "a", "FOO_BAR": "b"])).rewrite(directory: fixture.path("apps"))
        #expect(try fixture.text("apps/a.js") == "[a][b][STACK_ENV_VAR_SENTINEL_FOO_BARX]")
        #expect(try fixture.text("apps/b.js") == "only FOO set: b and a.")
        #expect(summary.filesChanged == 2)
        #expect(summary.tokensReplaced == 4)

        try fixture.write("apps/c.js", "STACK_ENV_VAR_SENTINEL_FOO_BAR")
        _ = try await TreeRewriter(rule: sentinels(["FOO": "a"])).rewrite(directory: fixture.path("apps"))
        #expect(try fixture.text("apps/c.js") == "STACK_ENV_VAR_SENTINEL_FOO_BAR")
    }

    /// §1.4-29, §5.5-12: tokens for unset or empty variables stay verbatim.
    @Test func unsetAndEmptyVariablesLeaveTokensVerbatim() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("apps/a.js", "x=STACK_ENV_VAR_SENTINEL_SET;y=STACK_ENV_VAR_SENTINEL_EMPTY;z=STACK_ENV_VAR_SENTINEL_UNSET")

        let summary = try await TreeRewriter(rule: sentinels(["SET": "1", "EMPTY": ""])).rewrite(directory: fixture.path("apps"))
        #expect(try fixture.text("apps/a.js") == "x=1;y=STACK_ENV_VAR_SENTINEL_EMPTY;z=STACK_ENV_VAR_SENTINEL_UNSET")
        #expect(summary.replacedNames == ["SET"])
        #expect(summary.unresolvedNames == ["EMPTY", "UNSET"])
    }

    /// §1.4-30, §5.4 #36: values go in byte for byte: sed's specials, the delimiter,
    /// newlines and multi-byte UTF-8 are all literal.
    @Test func valuesAreInsertedByteForByte() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let value = "a&b\\c|d/e\u{1F}f\ng\r\n$1\\1&&%s\\n é漢🙂 '\"` \u{0}end"
        try fixture.write("apps/a.js", "<STACK_ENV_VAR_SENTINEL_V>")

        _ = try await TreeRewriter(rule: sentinels(["V": value])).rewrite(directory: fixture.path("apps"))
        #expect(try fixture.read("apps/a.js") == Array("<".utf8) + Array(value.utf8) + Array(">".utf8))
    }

    /// §5.3: the bare prefix, the prefix with only `_`, and a prefix glued to a name
    /// without `_` are not substitutable tokens; the file is not even rewritten.
    @Test func bareSentinelAndMalformedTokensStayUntouched() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let content = "if(v.startsWith(\"STACK_ENV_VAR_SENTINEL\"))x; STACK_ENV_VAR_SENTINEL_ STACK_ENV_VAR_SENTINELFOO"
        try fixture.write("apps/a.js", content)
        try fixture.setTimes("apps/a.js", seconds: 1_000_000_000)

        let summary = try await TreeRewriter(rule: .sentinels(SentinelValues { _ in "X" })).rewrite(directory: fixture.path("apps"))
        #expect(try fixture.text("apps/a.js") == content)
        #expect(try fixture.status("apps/a.js").modificationTime == (1_000_000_000, 0))
        #expect(summary.filesChanged == 0)
        #expect(summary.unresolvedNames == ["", "STACK_ENV_VAR_SENTINELFOO"])
    }

    /// §5.3: no boundary check on the right, as upstream: digits and lower case end a
    /// token, so a minified `"…PORT_PREFIX" + "01"` still gets the prefix replaced.
    @Test func digitsAndLowercaseEndAToken() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("apps/a.js", "\"http://localhost:STACK_ENV_VAR_SENTINEL_NEXT_PUBLIC_STACK_PORT_PREFIX01\";STACK_ENV_VAR_SENTINEL_Aabc")

        _ = try await TreeRewriter(rule: sentinels(["NEXT_PUBLIC_STACK_PORT_PREFIX": "81", "A": "z"])).rewrite(directory: fixture.path("apps"))
        #expect(try fixture.text("apps/a.js") == "\"http://localhost:8101\";zabc")
    }

    /// §5.4 #36: a tree without any token is a normal outcome (upstream aborted).
    @Test func treeWithoutTokensIsNotAnError() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("apps/a.js", "console.log(1)")
        try fixture.write("apps/sub/b.html", "<p>hi</p>")
        try fixture.write("apps/empty.js", "")

        let summary = try await TreeRewriter(rule: sentinels(["A": "1"])).rewrite(directory: fixture.path("apps"))
        #expect(summary.filesScanned == 3)
        #expect(summary.filesChanged == 0)
        #expect(summary.tokensReplaced == 0)
        #expect(summary.bytesRead == 23)
    }

    /// Unchanged files are not written at all (same inode, same mtime); changed ones are
    /// replaced by rename (new inode) with their mode kept.
    @Test func onlyChangedFilesAreReplacedAndModesAreKept() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("apps/bin/run.js", "#!/usr/bin/env node\nSTACK_ENV_VAR_SENTINEL_A", mode: 0o755)
        try fixture.write("apps/private.js", "STACK_ENV_VAR_SENTINEL_A", mode: 0o640)
        try fixture.write("apps/plain.js", "nothing here", mode: 0o644)
        try fixture.write("apps/unresolved.js", "STACK_ENV_VAR_SENTINEL_B", mode: 0o644)
        for name in ["apps/bin/run.js", "apps/private.js", "apps/plain.js", "apps/unresolved.js"] {
            try fixture.setTimes(name, seconds: 1_500_000_000, nanoseconds: 123_456_789)
        }
        let before = try ["apps/bin/run.js", "apps/private.js", "apps/plain.js", "apps/unresolved.js"].map { try fixture.status($0) }

        let summary = try await TreeRewriter(rule: sentinels(["A": "value"])).rewrite(directory: fixture.path("apps"))
        #expect(summary.filesChanged == 2)
        let run = try fixture.status("apps/bin/run.js"), privateFile = try fixture.status("apps/private.js")
        #expect(run.permissions == 0o755)
        #expect(privateFile.permissions == 0o640)
        #expect(run.st_ino != before[0].st_ino)
        #expect(try fixture.text("apps/bin/run.js") == "#!/usr/bin/env node\nvalue")
        for (index, name) in ["apps/plain.js", "apps/unresolved.js"].enumerated() {
            let after = try fixture.status(name)
            #expect(after.st_ino == before[index + 2].st_ino)
            #expect(after.modificationTime == (1_500_000_000, 123_456_789))
        }
        #expect(try await fixture.listing("apps") == ["bin", "bin/run.js", "plain.js", "private.js", "unresolved.js"])
    }

    /// Binary content (NUL, 0xFF, invalid UTF-8) around tokens, and empty files.
    @Test func binaryAndEmptyFilesAreHandled() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let binary: [UInt8] = [0, 0xFF, 0xFE, 0xC3] + Array("STACK_ENV_VAR_SENTINEL_A".utf8) + [0, 0x80, 0x41] + Array("STACK_ENV_VAR_SENTINEL_A".utf8)
        try fixture.write("apps/font.woff2", binary)
        try fixture.write("apps/empty.js", [])

        let summary = try await TreeRewriter(rule: sentinels(["A": "é"])).rewrite(directory: fixture.path("apps"))
        #expect(try fixture.read("apps/font.woff2") == [0, 0xFF, 0xFE, 0xC3, 0xC3, 0xA9, 0, 0x80, 0x41, 0xC3, 0xA9])
        #expect(try fixture.read("apps/empty.js") == [])
        #expect(summary.filesScanned == 2)
        #expect(summary.tokensReplaced == 2)
    }

    /// Symlinks are never followed in place: a link to a file outside the tree, a link
    /// to a directory outside, and a dangling link all stay as they are, and so do
    /// their targets.
    @Test func symlinksAreNotFollowedWhenRewritingInPlace() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("outside/secret.js", "STACK_ENV_VAR_SENTINEL_A")
        try fixture.write("apps/inside.js", "STACK_ENV_VAR_SENTINEL_A")
        try fixture.symlink("apps/to-file.js", to: fixture.path("outside/secret.js"))
        try fixture.symlink("apps/to-dir", to: "../outside")
        try fixture.symlink("apps/dangling.js", to: "nowhere/at/all.js")

        let summary = try await TreeRewriter(rule: sentinels(["A": "1"])).rewrite(directory: fixture.path("apps"))
        #expect(summary.filesScanned == 1)
        #expect(try fixture.text("apps/inside.js") == "1")
        #expect(try fixture.text("outside/secret.js") == "STACK_ENV_VAR_SENTINEL_A")
        #expect(try fixture.status("apps/to-file.js").isSymlink)
        #expect(try fixture.linkTarget("apps/to-dir") == "../outside")
        #expect(try fixture.linkTarget("apps/dangling.js") == "nowhere/at/all.js")
    }

    /// A FIFO in the tree is skipped, not opened (opening it would block forever).
    @Test func specialFilesAreSkipped() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("apps/a.js", "STACK_ENV_VAR_SENTINEL_A")
        try #require(mkfifo(fixture.path("apps/pipe"), 0o644) == 0)

        let summary = try await TreeRewriter(rule: sentinels(["A": "1"])).rewrite(directory: fixture.path("apps"))
        #expect(summary.filesScanned == 1)
        #expect(try fixture.status("apps/pipe").st_mode & S_IFMT == S_IFIFO)
    }

    /// §5.5-13 (in spirit): a second run over the rewritten tree changes nothing and
    /// touches nothing.
    @Test func secondRunChangesNothing() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        for index in 0..<20 {
            try fixture.write("apps/d\(index % 4)/f\(index).js", "a STACK_ENV_VAR_SENTINEL_A b STACK_ENV_VAR_SENTINEL_UNSET c \(index)")
        }
        let rewriter = TreeRewriter(rule: sentinels(["A": "STACK_ENV_VAR_SENTINEL"]))
        let first = try await rewriter.rewrite(directory: fixture.path("apps"))
        #expect(first.filesChanged == 20)
        let inodes = try (0..<20).map { try fixture.status("apps/d\($0 % 4)/f\($0).js").st_ino }

        let second = try await rewriter.rewrite(directory: fixture.path("apps"))
        #expect(second.filesChanged == 0)
        #expect(second.filesScanned == 20)
        #expect(try (0..<20).map { try fixture.status("apps/d\($0 % 4)/f\($0).js").st_ino } == inodes)
        #expect(try fixture.text("apps/d1/f5.js") == "a STACK_ENV_VAR_SENTINEL b STACK_ENV_VAR_SENTINEL_UNSET c 5")
    }

    /// Lookups see the variable name exactly (the token minus `STACK_ENV_VAR_SENTINEL_`).
    @Test func lookupReceivesTheVariableName() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("apps/a.js", "STACK_ENV_VAR_SENTINEL_NEXT_PUBLIC_STACK_API_URL STACK_ENV_VAR_SENTINEL_USE_INLINE_ENV_VARS")
        let rule = RewriteRule.sentinels(SentinelValues { name in "<\(name)>" })
        _ = try await TreeRewriter(rule: rule).rewrite(directory: fixture.path("apps"))
        #expect(try fixture.text("apps/a.js") == "<NEXT_PUBLIC_STACK_API_URL> <USE_INLINE_ENV_VARS>")
    }
}
