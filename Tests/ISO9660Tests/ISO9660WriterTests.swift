import ISO9660
import StackCore
import TestSupport
import Testing

@Suite struct ISO9660WriterTests {
    static func image(_ files: [(String, [UInt8])], date: ISO9660Timestamp = ISOReadBack.fixedDate) -> ISO9660Image {
        ISO9660Image(files: files.map { ISO9660File(name: $0.0, contents: $0.1) }, recordingDate: date)
    }

    /// Same input ⇒ identical bytes, and streaming equals the in-memory form; a
    /// different date changes the bytes (the date really is an input).
    @Test func sameInputGivesIdenticalBytes() throws {
        let files = [("runtime.env", Array("A=1\n".utf8)), ("base.env", [UInt8](repeating: 0x41, count: 5000)), ("empty", [])]
        let first = try Self.image(files).bytes()
        let second = try Self.image(files).bytes()
        var streamed: [UInt8] = []
        try Self.image(files).write { streamed += $0 }
        #expect(first == second)
        #expect(first == streamed)
        let later = try Self.image(files, date: ISO9660Timestamp(year: 2024, month: 3, day: 1)).bytes()
        #expect(later.count == first.count && later != first)
    }

    /// §5.4-44: directory records sorted as ECMA-119 9.3 requires (plain view) and by
    /// UCS-2 code units (Joliet), whatever the input order; data stays in input order.
    @Test func directoryRecordsAreSortedWhileDataKeepsInputOrder() async throws {
        let names = ["runtime.env", "base.env", "Zeta", "alpha", "a.b", "a", "A_B", "ab", "a-", "B.ENV", "b.env2", "x.y.z", "ä"]
        let files = names.enumerated().map { ($0.element, Array("file \($0.offset)\n".utf8)) }
        let image = Self.image(files)
        let bytes = try image.bytes()
        let layout = try image.layout()
        #expect(layout.entries.map(\.firstSector) == Array(25..<(25 + names.count)))

        let plain = ISOReadBack.directoryRecords(bytes, descriptorSector: 16).dropFirst(2).map { String(decoding: $0.identifier, as: UTF8.self) }
        #expect(plain == ["A.;1", "A.B;1", "AB.;1", "ALPHA.;1", "A_.;1", "A_B.;1", "B.ENV;1", "B.ENV2;1", "BASE.ENV;1",
                          "RUNTIME.ENV;1", "X_Y.Z;1", "ZETA.;1", "_.;1"])
        let joliet = ISOReadBack.directoryRecords(bytes, descriptorSector: 17).dropFirst(2)
            .map { record in String(decoding: stride(from: 0, to: record.identifier.count, by: 2).map { UInt16(record.identifier[$0]) << 8 | UInt16(record.identifier[$0 + 1]) }, as: UTF16.self) }
        #expect(joliet == ["A_B", "B.ENV", "Zeta", "a", "a-", "a.b", "ab", "alpha", "b.env2", "base.env", "runtime.env", "x.y.z", "ä"])

        let imagePath = try TemporaryDirectory.make(prefix: "iso")
        defer { imagePath.remove() }
        try ISOReadBack.write(image, to: imagePath.file("sorted.iso"))
        #expect(try await ISOReadBack.isoinfoListing(imagePath.file("sorted.iso"), view: .plain) == plain)
        #expect(try await ISOReadBack.isoinfoListing(imagePath.file("sorted.iso"), view: .joliet) == joliet)
    }

    /// Plain names: interchange level 2 d-characters, last dot = extension, `.` kept
    /// when the extension is empty, truncated to 30 characters, collisions numbered.
    @Test func plainIdentifiersMapToLevelTwoDCharacters() throws {
        let names = ["runtime.env", "base.env", "README", ".env", "a-b.tar.gz", "Straße.txt",
                     String(repeating: "n", count: 40) + ".conf", "x." + String(repeating: "e", count: 40), "A", "a"]
        let layout = try Self.image(names.map { ($0, []) }).layout()
        #expect(layout.entries.map(\.plainIdentifier) == [
            "RUNTIME.ENV;1", "BASE.ENV;1", "README.;1", ".ENV;1", "A_B_TAR.GZ;1", "STRA_E.TXT;1",
            String(repeating: "N", count: 26) + ".CONF;1", "X." + String(repeating: "E", count: 29) + ";1", "A.;1", "A_1.;1",
        ])
    }

    /// Names Joliet cannot hold are rejected with the name in the message, before any byte is written.
    @Test(arguments: [
        ("", "is empty"), ("a/b", "forbids"), ("a:b", "forbids"), ("x;1", "forbids"), ("tab\there", "control character"),
        (".", "reserved"), ("..", "reserved"), ("trailing.", "ends with a dot"), ("emoji😀", "Basic Multilingual Plane"),
        (String(repeating: "é", count: 65), "at most 64"),
    ])
    func invalidJolietNamesAreRejected(name: String, reason: String) throws {
        var sinkCalls = 0
        let error = try #require(throws: ISO9660Error.self) {
            try Self.image([(name, [1])]).write { _ in sinkCalls += 1 }
        }
        #expect(error.code == .invalidFileName)
        #expect(error.message.contains(reason))
        #expect(error.message.contains(name.debugDescription))
        #expect(sinkCalls == 0)
    }

    @Test func duplicateNamesAreRejectedButCaseAndNormalisationVariantsAreDistinct() throws {
        let duplicate = try #require(throws: ISO9660Error.self) { try Self.image([("a.env", []), ("a.env", [])]).layout() }
        #expect(duplicate.code == .duplicateFileName)
        // "é" precomposed vs e + combining acute: equal as Swift Strings, distinct files.
        let layout = try Self.image([("A.env", []), ("a.env", []), ("\u{E9}", []), ("e\u{301}", [])]).layout()
        #expect(layout.entries.count == 4)
    }

    @Test func volumeIdentifierMustBeDCharacters() throws {
        for label in ["", "stackcfg", "STACK CFG", String(repeating: "A", count: 33)] {
            var image = Self.image([("a", [])])
            image.volumeIdentifier = label
            #expect(throws: ISO9660Error(.invalidVolumeIdentifier,
                                         "volume identifier \(label.debugDescription) must be 1–32 characters of A–Z, 0–9 and _")) {
                try image.bytes()
            }
        }
    }

    @Test func timestampsConvertFromUnixTimeInUTC() throws {
        #expect(try ISO9660Timestamp(unixSeconds: 0) == ISO9660Timestamp(year: 1970, month: 1, day: 1))
        #expect(try ISO9660Timestamp(unixSeconds: 951_782_400) == ISO9660Timestamp(year: 2000, month: 2, day: 29))
        #expect(try ISO9660Timestamp(unixSeconds: 1_700_000_000) == ISO9660Timestamp(year: 2023, month: 11, day: 14, hour: 22, minute: 13, second: 20))
        #expect(try ISO9660Timestamp(unixSeconds: -1) == ISO9660Timestamp(year: 1969, month: 12, day: 31, hour: 23, minute: 59, second: 59))
        #expect(throws: ISO9660Error.self) { try ISO9660Timestamp(unixSeconds: -2_300_000_000) }
        #expect(throws: ISO9660Error.self) { try ISO9660Timestamp(year: 2023, month: 2, day: 29) }
    }

    /// Empty files, sizes around sector boundaries and a multi-megabyte file come back
    /// byte for byte in both views.
    @Test func fileSizesFromEmptyToMegabytesReadBack() async throws {
        var generator = SeededGenerator(seed: 7)
        let sizes = [0, 1, 2047, 2048, 2049, 4096, 3 * 1024 * 1024 + 17, 0]
        let files = sizes.enumerated().map { index, size in
            ("file-\(index).bin", (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) })
        }
        let directory = try TemporaryDirectory.make(prefix: "iso")
        defer { directory.remove() }
        let image = Self.image(files)
        try ISOReadBack.write(image, to: directory.file("sizes.iso"))
        let layout = try image.layout()
        #expect(zip(layout.entries, layout.entries.dropFirst()).allSatisfy { $1.firstSector - $0.firstSector == max(1, ($0.size + 2047) / 2048) })

        let joliet = try await ISOReadBack.extractWithXorriso(directory.file("sizes.iso"), view: .joliet, into: directory.file("j"))
        let plain = try await ISOReadBack.extractWithXorriso(directory.file("sizes.iso"), view: .plain, into: directory.file("p"))
        for (file, entry) in zip(files, layout.entries) {
            #expect(joliet[Array(file.0.utf8)] == file.1, "\(file.0) Joliet")
            #expect(plain[Array(ISOReadBack.xorrisoPlainName(entry.plainIdentifier).utf8)] == file.1, "\(file.0) plain")
        }
    }

    /// More records than one sector holds: the directory spans several sectors, no
    /// record straddles a boundary, and both tools list and extract every file.
    @Test func largeDirectorySpansSectorsWithoutSplittingRecords() async throws {
        let files = (0..<60).map { ("config-file-number-\($0)-with-a-rather-long-descriptive-name.env", Array("value \($0)\n".utf8)) }
        let image = Self.image(files)
        let layout = try image.layout()
        #expect(layout.plainDirectorySectors == 2)
        #expect(layout.jolietDirectorySectors > layout.plainDirectorySectors)
        let bytes = try image.bytes()
        for descriptor in [16, 17] {
            let records = ISOReadBack.directoryRecords(bytes, descriptorSector: descriptor)
            #expect(records.count == 62)
            #expect(records.allSatisfy { $0.offset / 2048 == ($0.offset + $0.length - 1) / 2048 })
            let sectors = descriptor == 16 ? layout.plainDirectorySectors : layout.jolietDirectorySectors
            #expect(records[0].dataLength == UInt32(sectors * 2048))
        }
        let directory = try TemporaryDirectory.make(prefix: "iso")
        defer { directory.remove() }
        try ISOReadBack.write(image, to: directory.file("big.iso"))
        #expect(try await ISOReadBack.isoinfoListing(directory.file("big.iso"), view: .joliet).count == 60)
        let joliet = try await ISOReadBack.extractWithXorriso(directory.file("big.iso"), view: .joliet, into: directory.file("j"))
        #expect(joliet == Dictionary(uniqueKeysWithValues: files.map { (Array($0.0.utf8), $0.1) }))
        let plain = try await ISOReadBack.extractWithXorriso(directory.file("big.iso"), view: .plain, into: directory.file("p"))
        #expect(plain.count == 60)
    }
}
