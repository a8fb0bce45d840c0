import StackCore
import Testing
import TestSupport

@Suite struct AtomicFileTests {
    @Test func replacesContentAndAppliesModeBeforeWriting() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("f")
        try AtomicFile(path: path, mode: 0o640).write(Array("one".utf8))
        try AtomicFile(path: path, mode: 0o600).write(Array("two".utf8))
        #expect(try POSIX.readFile(path) == Array("two".utf8))
        #expect(try await TestShell.run("stat -c %a '\(path)'") == "600\n")
    }

    @Test func failingWriterLeavesOldContentAndNoTempFile() async throws {
        struct Boom: Error {}
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("f")
        try AtomicFile(path: path).write(Array("old".utf8))
        #expect(throws: Boom.self) {
            try AtomicFile(path: path).write { fd in
                try POSIX.writeAll(fd, Array("partial".utf8), context: "f")
                throw Boom()
            }
        }
        #expect(try POSIX.readFile(path) == Array("old".utf8))
        #expect(try await TestShell.run("ls -A '\(dir.path)'") == "f\n")
    }

    @Test func missingDirectoryIsAClearError() async throws {
        let error = try #require(throws: StackError.self) { try AtomicFile(path: "/nonexistent-dir/x").write([1]) }
        #expect(error.code == .systemCall)
        #expect(error.message.contains("/nonexistent-dir/x"))
    }
}
