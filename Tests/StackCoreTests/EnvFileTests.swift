import StackCore
import Testing
import TestSupport

@Suite struct EnvFileTests {
    @Test func parsesAssignmentsCommentsAndBlankLines() async throws {
        let text = "# comment\n\nA=1\n  # indented comment\nB=x=y\nEMPTY=\nC=  spaced value \nD=\"quoted\""
        let file = try EnvFile.parse(Array(text.utf8), source: "t.env")
        #expect(file.keys == ["A", "B", "EMPTY", "C", "D"])
        #expect(file["B"] == "x=y")
        #expect(file["EMPTY"] == "")
        #expect(file["C"] == "  spaced value ")
        #expect(file["D"] == "\"quoted\"", "quotes are literal, never interpreted")
        #expect(file.entries[0].line == 3)
    }

    /// §5.4-6: env files are parsed, never evaluated.
    @Test(arguments: [
        ("export A=1", 1), ("A = 1", 1), ("$(touch /tmp/pwned)", 1), ("A=1\nbare", 2),
        ("1A=x", 1), ("A-B=x", 1), ("A=1\r", 1), (" A=1", 1), ("A=\u{0}", 1),
    ])
    func rejectsAnythingButKeyValue(text: String, line: Int) throws {
        let error = try #require(throws: StackError.self) { try EnvFile.parse(Array(text.utf8), source: "/run/x.env") }
        #expect(error.code == .invalidEnvFile)
        #expect(error.message.hasPrefix("/run/x.env:\(line): "))
    }

    @Test func errorsNeverEchoTheLine() async throws {
        let secret = "deadbeef" + String(repeating: "a", count: 56)
        let error = try #require(throws: StackError.self) { try EnvFile.parse(Array(secret.utf8), source: "s.env") }
        #expect(!error.message.contains(secret))
    }

    @Test func rejectsInvalidUTF8() async throws {
        #expect(throws: StackError.self) { try EnvFile.parse([0x41, 0x3D, 0xFF], source: "b.env") }
    }

    @Test func laterAssignmentsWinAndDuplicatesAreReported() async throws {
        let file = try EnvFile.parse(Array("A=1\nB=2\nA=3\n".utf8), source: "d.env")
        #expect(file["A"] == "3")
        #expect(file.duplicateKeys == ["A"])
        #expect(file.values == ["A": "3", "B": "2"])
    }

    @Test func writesAtomicallyWithMode0600AndRoundTrips() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("out.env")
        let file = EnvFile(["A": "1", "B": "with = and $dollar"])
        try file.write(to: path)
        #expect(try EnvFile.read(path: path) == EnvFile(entries: [.init(key: "A", value: "1", line: 1), .init(key: "B", value: "with = and $dollar", line: 2)]))
        #expect(try await TestShell.run("stat -c %a '\(path)'") == "600\n")
        #expect(try await TestShell.run("ls -A '\(dir.path)'") == "out.env\n", "no temp file left behind")
    }

    @Test func refusesValuesTheFormatCannotCarry() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        #expect(throws: StackError.self) { try EnvFile(["A": "line1\nline2"]).write(to: dir.file("x.env")) }
        #expect(throws: StackError.self) { try EnvFile(["BAD KEY": "v"]).write(to: dir.file("x.env")) }
        #expect(try await TestShell.run("ls -A '\(dir.path)'") == "", "nothing half-written")
    }
}
