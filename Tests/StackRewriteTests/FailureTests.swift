import StackCore
import StackRewrite
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Failures mid-tree: the error names the file, and no file is ever half-written.
///
/// As root a mode-000 file is still readable (CAP_DAC_OVERRIDE), so these tests then
/// run the rewriter (the `rewrite-bench` CLI built with the tests) as `nobody` over a
/// tree owned by `nobody`, where the permission really is enforced.
@Suite struct FailureTests {
    static var isRoot: Bool { geteuid() == 0 }

    /// `rewrite-bench`, built next to this test binary.
    static var benchExecutable: String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let me = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
        return Path.join(Path.directory(of: me), "rewrite-bench")
    }

    /// Hands `fixture` to nobody when root: the fixture's own directory traversable, the
    /// tree owned by nobody, and a copy of the CLI in it (the build directory may sit
    /// where nobody cannot reach, such as under /root).
    static func prepareForUnprivilegedRun(_ fixture: Fixture, tree: String) async throws {
        guard isRoot else { return }
        try await TestShell.run("chmod 755 '\(fixture.root)' && chown -R nobody '\(fixture.path(tree))' && cp '\(benchExecutable)' '\(fixture.path("rewrite-bench"))' && chmod 755 '\(fixture.path("rewrite-bench"))'")
    }

    /// Runs the CLI, as nobody when we are root.
    static func runBench(_ fixture: Fixture, _ arguments: [String], environment: [String: String] = [:]) async throws -> (status: Int32, stdout: String, stderr: String) {
        let executable = isRoot ? fixture.path("rewrite-bench") : benchExecutable
        let quoted = ([executable] + arguments).map { "'\($0)'" }.joined(separator: " ")
        let assignments = environment.map { "'\($0.key)=\($0.value)'" }.joined(separator: " ")
        let script = isRoot ? "exec runuser -u nobody -- env \(assignments) \(quoted)" : "exec env \(assignments) \(quoted)"
        let output = try await TestShell.output(script)
        let status: Int32 = output.status.isSuccess ? 0 : 1
        return (status, output.standardOutputText, output.standardErrorText)
    }

    /// The file made unreadable in every test tree.
    static func makeUnreadable(_ path: String) throws {
        try #require(chmod(path, 0) == 0)
    }

    /// An unreadable file in the middle of the tree: the rewrite fails naming that
    /// file; every other file is either untouched or completely rewritten; no
    /// temporary file is left behind.
    @Test func unreadableFileMidTreeFailsNamingIt() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        let original = "head STACK_ENV_VAR_SENTINEL_A tail " + String(repeating: "x", count: 5000)
        let rewritten = "head value-of-a tail " + String(repeating: "x", count: 5000)
        var names: [String] = []
        for index in 0..<60 {
            let name = "apps/d\(index % 6)/f\(index).js"
            names.append(name)
            try fixture.write(name, original)
        }
        try fixture.write("apps/d3/zz-unreadable.js", original)
        try await Self.prepareForUnprivilegedRun(fixture, tree: "apps")
        try Self.makeUnreadable(fixture.path("apps/d3/zz-unreadable.js"))

        let result = try await Self.runBench(fixture, ["sentinels", fixture.path("apps"), "--workers", "2", "--buffer-kb", "1"], environment: ["A": "value-of-a"])
        #expect(result.status != 0)
        #expect(result.stderr.contains(fixture.path("apps/d3/zz-unreadable.js")), "\(result.stderr)")
        #expect(result.stderr.contains("Permission denied"), "\(result.stderr)")
        for name in names {
            let text = try fixture.text(name)
            #expect(text == original || text == rewritten, "\(name) is half-written")
        }
        let leftovers = try await fixture.listing("apps").filter { $0.contains(".stack-rewrite") }
        #expect(leftovers.isEmpty)

        // After fixing the file, running again completes the job.
        try #require(chmod(fixture.path("apps/d3/zz-unreadable.js"), 0o644) == 0)
        let again = try await Self.runBench(fixture, ["sentinels", fixture.path("apps")], environment: ["A": "value-of-a"])
        #expect(again.status == 0, "\(again.stderr)")
        for name in names + ["apps/d3/zz-unreadable.js"] { #expect(try fixture.text(name) == rewritten) }
    }

    /// The same while copying: the copy fails naming the unreadable source file.
    @Test func unreadableFileFailsTheCopyNamingIt() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        for index in 0..<20 { try fixture.write("tree/src/apps/f\(index).js", "STACK_ENV_VAR_SENTINEL_A \(index)") }
        try fixture.write("tree/src/apps/locked.js", "x")
        try fixture.makeDirectory("tree/dst")
        try await Self.prepareForUnprivilegedRun(fixture, tree: "tree")
        try Self.makeUnreadable(fixture.path("tree/src/apps/locked.js"))

        let result = try await Self.runBench(fixture, ["copy", fixture.path("tree/src"), fixture.path("tree/dst")])
        #expect(result.status != 0)
        #expect(result.stderr.contains(fixture.path("tree/src/apps/locked.js")), "\(result.stderr)")
    }

    /// A read-only source directory makes a read-only copy; copying again over it must
    /// still work for an unprivileged user (the entrypoint runs as `node`).
    @Test func readOnlySourceDirectoriesCanBeCopiedAgain() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("tree/src/ro/a.js", "a")
        try fixture.makeDirectory("tree/dst")
        try await Self.prepareForUnprivilegedRun(fixture, tree: "tree")
        try #require(chmod(fixture.path("tree/src/ro"), 0o555) == 0)

        let first = try await Self.runBench(fixture, ["copy", fixture.path("tree/src"), fixture.path("tree/dst")])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(try fixture.status("tree/dst/ro").permissions == 0o555)
        let second = try await Self.runBench(fixture, ["copy", fixture.path("tree/src"), fixture.path("tree/dst")])
        #expect(second.status == 0, "\(second.stderr)")
        #expect(try fixture.status("tree/dst/ro").permissions == 0o555)
        #expect(try fixture.text("tree/dst/ro/a.js") == "a")
    }

    /// A directory the rewriter may not write into: the changed file cannot be staged,
    /// the error names it, and the original stays intact.
    @Test func unwritableDirectoryLeavesTheOriginalIntact() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("apps/locked/a.js", "STACK_ENV_VAR_SENTINEL_A")
        try await Self.prepareForUnprivilegedRun(fixture, tree: "apps")
        try #require(chmod(fixture.path("apps/locked"), 0o555) == 0)

        let result = try await Self.runBench(fixture, ["sentinels", fixture.path("apps")], environment: ["A": "1"])
        #expect(result.status != 0)
        #expect(result.stderr.contains(fixture.path("apps/locked/a.js")), "\(result.stderr)")
        #expect(try fixture.text("apps/locked/a.js") == "STACK_ENV_VAR_SENTINEL_A")
    }
}
