import StackCore
import StackRewrite
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `TreeCopier`: `cp -a`-like copies, optionally rewriting one subtree on the way.
@Suite struct TreeCopierTests {
    /// §1.4-26: content, modes, and access/modification times (nanoseconds) of files
    /// and directories are copied, empty files and empty directories included.
    @Test func copiesContentModesAndTimesLikeCpA() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("src/bin/tool", "#!/bin/sh\necho hi\n", mode: 0o755)
        try fixture.write("src/secret.key", "k", mode: 0o600)
        try fixture.write("src/readonly.txt", "r", mode: 0o444)
        try fixture.write("src/empty", "")
        try fixture.makeDirectory("src/empty-dir", mode: 0o750)
        try fixture.makeDirectory("src/bin", mode: 0o711)
        let entries = ["bin/tool", "secret.key", "readonly.txt", "empty", "empty-dir", "bin"]
        for (index, entry) in entries.enumerated() { try fixture.setTimes("src/" + entry, seconds: 1_600_000_000 + index, nanoseconds: 1000 * index + 7) }
        try fixture.setTimes("src", seconds: 1_650_000_000, nanoseconds: 5)

        // Reading the source may update its access time (relatime), so compare with before.
        let before = try (entries + [""]).map { try fixture.status("src/" + $0) }

        let summary = try await TreeCopier().copy(from: fixture.path("src"), to: fixture.path("dst"))
        #expect(summary.filesCopied == 4)
        #expect(summary.directories == 2)
        #expect(summary.copiedAnything)
        for (entry, source) in zip(entries + [""], before) {
            let copy = try fixture.status("dst/" + entry)
            #expect(copy.permissions == source.permissions, "\(entry)")
            #expect(copy.modificationTime == source.modificationTime, "\(entry)")
            #expect(copy.st_atim.tv_sec == source.st_atim.tv_sec, "\(entry)")
            #expect(copy.st_mode & S_IFMT == source.st_mode & S_IFMT, "\(entry)")
        }
        #expect(try fixture.text("dst/bin/tool") == "#!/bin/sh\necho hi\n")
        #expect(try fixture.read("dst/empty") == [])
        let diff = try await TestShell.output("diff -r --no-dereference '\(fixture.path("src"))' '\(fixture.path("dst"))'")
        #expect(diff.status.isSuccess, "\(diff.standardOutputText)")
    }

    /// Symlinks stay symlinks with the same target text and are never followed: not a
    /// relative one inside, not an absolute one out of the tree, not a dangling one.
    @Test func symlinksAreCopiedAsSymlinksNeverFollowed() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("outside/data/token.js", "STACK_ENV_VAR_SENTINEL_A")
        try fixture.setTimes("outside/data/token.js", seconds: 1_234_567_890)
        try fixture.write("src/node_modules/.pnpm/pkg@1.0.0/node_modules/pkg/index.js", "module.exports=1")
        try fixture.symlink("src/node_modules/pkg", to: ".pnpm/pkg@1.0.0/node_modules/pkg")
        try fixture.symlink("src/apps/out-file.js", to: fixture.path("outside/data/token.js"))
        try fixture.symlink("src/apps/out-dir", to: fixture.path("outside/data"))
        try fixture.symlink("src/apps/dangling", to: "../missing/target")
        try fixture.setTimes("src/apps/dangling", seconds: 1_111_111_111)

        let summary = try await TreeCopier().copy(from: fixture.path("src"), to: fixture.path("dst"), rewriting: sentinels(["A": "1"]))
        #expect(summary.symlinks == 4)
        #expect(try fixture.linkTarget("dst/node_modules/pkg") == ".pnpm/pkg@1.0.0/node_modules/pkg")
        #expect(try fixture.linkTarget("dst/apps/out-file.js") == fixture.path("outside/data/token.js"))
        #expect(try fixture.linkTarget("dst/apps/out-dir") == fixture.path("outside/data"))
        #expect(try fixture.linkTarget("dst/apps/dangling") == "../missing/target")
        #expect(try fixture.status("dst/apps/dangling").modificationTime == (1_111_111_111, 0))
        #expect(try fixture.text("outside/data/token.js") == "STACK_ENV_VAR_SENTINEL_A")
        #expect(try fixture.status("outside/data/token.js").modificationTime == (1_234_567_890, 0))
        #expect(try await fixture.listing("outside") == ["data", "data/token.js"])
        #expect(try fixture.text("dst/node_modules/pkg/index.js") == "module.exports=1")
    }

    /// §5.4 #35 groundwork: copying over an earlier copy replaces everything in the
    /// way and never writes through it: an old file (even a hard link to the source),
    /// a symlink to outside where a file or directory belongs, a directory where a
    /// file belongs, a file where a directory belongs.
    @Test func existingDestinationIsReplacedNeverWrittenThrough() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("outside/victim.js", "do not touch")
        try fixture.makeDirectory("outside/victim-dir")
        try fixture.write("src/apps/a.js", "new STACK_ENV_VAR_SENTINEL_A")
        try fixture.write("src/apps/b.js", "b")
        try fixture.write("src/apps/c.js", "c")
        try fixture.write("src/apps/d/inner.js", "inner")
        try fixture.write("src/apps/e/inner.js", "inner")
        try fixture.write("src/apps/linked.js", "source content STACK_ENV_VAR_SENTINEL_A")

        try fixture.write("dst/apps/a.js", String(repeating: "old content ", count: 100))
        try fixture.symlink("dst/apps/b.js", to: fixture.path("outside/victim.js"))
        try fixture.write("dst/apps/c.js/deep/file", "a directory where a file belongs")
        try fixture.write("dst/apps/d", "a file where a directory belongs")
        try fixture.symlink("dst/apps/e", to: fixture.path("outside/victim-dir"))
        try #require(link(fixture.path("src/apps/linked.js"), fixture.path("dst/apps/linked.js")) == 0)

        _ = try await TreeCopier().copy(from: fixture.path("src"), to: fixture.path("dst"), rewriting: sentinels(["A": "1"]), within: "apps")
        #expect(try fixture.text("dst/apps/a.js") == "new 1")
        #expect(try fixture.status("dst/apps/b.js").isRegular)
        #expect(try fixture.text("dst/apps/b.js") == "b")
        #expect(try fixture.text("dst/apps/c.js") == "c")
        #expect(try fixture.text("dst/apps/d/inner.js") == "inner")
        #expect(try fixture.status("dst/apps/e").isDirectory)
        #expect(try fixture.text("dst/apps/linked.js") == "source content 1")
        #expect(try fixture.text("src/apps/linked.js") == "source content STACK_ENV_VAR_SENTINEL_A")
        #expect(try fixture.text("outside/victim.js") == "do not touch")
        #expect(try await fixture.listing("outside") == ["victim-dir", "victim.js"])
    }

    /// A restart copies over the previous start's copy: plain files are reused
    /// (truncated and rewritten, same inode: no inode churn), and content, mode and
    /// times follow the source as it is now; files gone from the source stay (as cp).
    @Test func restartReusesThePreviousCopy() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("src/apps/a.js", "first STACK_ENV_VAR_SENTINEL_A")
        try fixture.write("src/lib/b.js", "b1", mode: 0o644)
        try fixture.symlink("src/lib/link", to: "b.js")
        _ = try await TreeCopier().copy(from: fixture.path("src"), to: fixture.path("dst"), rewriting: sentinels(["A": "1"]), within: "apps")
        let inodes = try ["apps/a.js", "lib/b.js"].map { try fixture.status("dst/" + $0).st_ino }

        try fixture.write("src/apps/a.js", "second STACK_ENV_VAR_SENTINEL_A")
        try fixture.write("src/lib/b.js", "b2, longer than before", mode: 0o755)
        try fixture.setTimes("src/lib/b.js", seconds: 1_700_000_000)
        let summary = try await TreeCopier().copy(from: fixture.path("src"), to: fixture.path("dst"), rewriting: sentinels(["A": "2"]), within: "apps")
        #expect(summary.filesCopied == 2)
        #expect(try fixture.text("dst/apps/a.js") == "second 2")
        #expect(try fixture.text("dst/lib/b.js") == "b2, longer than before")
        #expect(try fixture.status("dst/lib/b.js").permissions == 0o755)
        #expect(try fixture.status("dst/lib/b.js").modificationTime == (1_700_000_000, 0))
        #expect(try ["apps/a.js", "lib/b.js"].map { try fixture.status("dst/" + $0).st_ino } == inodes)
        #expect(try fixture.linkTarget("dst/lib/link") == "b.js")
    }

    /// §1.2 step 9: only files under the scope (`apps`) go through the rule; the same
    /// token elsewhere (the SDK in node_modules) is copied verbatim; the source tree is
    /// never modified.
    @Test func fusedCopyRewritesOnlyWithinScope() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("src/apps/backend/.next/server/chunk.js", "url=\"STACK_ENV_VAR_SENTINEL_NEXT_PUBLIC_STACK_API_URL\"")
        try fixture.write("src/appsx/other.js", "STACK_ENV_VAR_SENTINEL_NEXT_PUBLIC_STACK_API_URL")
        try fixture.write("src/node_modules/sdk/env.js", "STACK_ENV_VAR_SENTINEL_NEXT_PUBLIC_STACK_API_URL")
        try fixture.write("src/top.js", "STACK_ENV_VAR_SENTINEL_NEXT_PUBLIC_STACK_API_URL")
        try fixture.setTimes("src/apps/backend/.next/server/chunk.js", seconds: 1_000_000_000)

        let summary = try await TreeCopier().copy(from: fixture.path("src"), to: fixture.path("dst"),
                                                  rewriting: sentinels(["NEXT_PUBLIC_STACK_API_URL": "http://localhost:8102"]), within: "apps")
        #expect(try fixture.text("dst/apps/backend/.next/server/chunk.js") == "url=\"http://localhost:8102\"")
        for untouched in ["appsx/other.js", "node_modules/sdk/env.js", "top.js"] {
            #expect(try fixture.text("dst/" + untouched) == "STACK_ENV_VAR_SENTINEL_NEXT_PUBLIC_STACK_API_URL")
        }
        #expect(try fixture.text("src/apps/backend/.next/server/chunk.js") == "url=\"STACK_ENV_VAR_SENTINEL_NEXT_PUBLIC_STACK_API_URL\"")
        #expect(summary.rewrite.filesScanned == 1)
        #expect(summary.rewrite.filesChanged == 1)
        #expect(summary.filesCopied == 4)
        // The rewritten copy keeps the source's mtime, like every other copied file.
        #expect(try fixture.status("dst/apps/backend/.next/server/chunk.js").modificationTime == (1_000_000_000, 0))
    }

    /// Big files out of scope go through copy_file_range; the bytes must be identical.
    @Test func largeFilesAreCopiedIntact() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        var random = TestRandom(seed: 99)
        let big = (0..<(3 * 1024 * 1024 + 17)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        try fixture.write("src/engine.wasm", big)

        let summary = try await TreeCopier(options: RewriteOptions(bufferSize: 4096)).copy(from: fixture.path("src"), to: fixture.path("dst"))
        #expect(summary.bytesCopied == Int64(big.count))
        #expect(try fixture.read("dst/engine.wasm") == big)
    }

    /// FIFOs are skipped (with a debug note), not recreated and not opened.
    @Test func specialFilesAreSkipped() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("src/a.js", "a")
        try #require(mkfifo(fixture.path("src/pipe"), 0o644) == 0)

        let summary = try await TreeCopier().copy(from: fixture.path("src"), to: fixture.path("dst"))
        #expect(summary.specialFilesSkipped == 1)
        #expect(try await fixture.listing("dst") == ["a.js"])
    }

    /// An empty source copies nothing, and says so.
    @Test func emptySourceReportsNothingCopied() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.makeDirectory("src")
        let summary = try await TreeCopier().copy(from: fixture.path("src"), to: fixture.path("dst"))
        #expect(!summary.copiedAnything)
        #expect(fixture.exists("dst"))
    }

    /// A destination inside the source is not copied into itself (no endless recursion).
    @Test func destinationInsideSourceIsNotCopiedIntoItself() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("src/a.js", "a")
        try fixture.write("src/sub/b.js", "b")

        _ = try await TreeCopier().copy(from: fixture.path("src"), to: fixture.path("src/work"))
        #expect(try await fixture.listing("src") == ["a.js", "sub", "sub/b.js", "work", "work/a.js", "work/sub", "work/sub/b.js"])
    }

    /// Copying a directory onto itself is refused with a clear error.
    @Test func copyOntoItselfIsRejected() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("src/a.js", "a")
        try fixture.symlink("alias", to: "src")

        let error = try await #require(throws: RewriteError.self) {
            try await TreeCopier().copy(from: fixture.path("src"), to: fixture.path("alias"))
        }
        #expect(error.code == .invalidTree)
        #expect(error.message.contains("in place"))
        #expect(try fixture.text("src/a.js") == "a")
    }

    /// A missing source is an error naming it.
    @Test func missingSourceIsAnErrorNamingIt() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let error = try await #require(throws: RewriteError.self) {
            try await TreeCopier().copy(from: fixture.path("nope"), to: fixture.path("dst"))
        }
        #expect(error.path == fixture.path("nope"))
        #expect(error.errno == ENOENT)
    }
}
