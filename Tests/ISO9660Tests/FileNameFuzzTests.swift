import ISO9660
import StackCore
import TestSupport
import Testing

/// Random names (1–64 characters: mixed case, digits, dots, dashes, Unicode inside and
/// outside the BMP, some duplicates) against an independent oracle: each case either
/// reads back identically through xorriso in both views, or fails with the error the
/// oracle predicts. Seeded, so a failure names a reproducible case.
@Suite struct FileNameFuzzTests {
    static let seed: UInt64 = 0x5EED_1509
    static let caseCount = 400

    static let ascii = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789").map(String.init)
    static let punctuation = [".", "-", "_"]
    static let bmp = ["é", "ß", "Ж", "日", "ü", "Ω", "\u{301}", "ñ", "€", " "]
    static let astral = ["😀", "𝄞"]

    struct Case {
        var files: [(name: String, contents: [UInt8])]
    }

    static func makeCase(_ generator: inout SeededGenerator) -> Case {
        var files: [(String, [UInt8])] = []
        for _ in 0..<Int.random(in: 1...8, using: &generator) {
            let roll = Int.random(in: 0..<100, using: &generator)
            var name: String
            if roll < 3, let previous = files.last?.0 {
                name = previous                                       // exact duplicate
            } else if roll < 15, let previous = files.last?.0 {
                name = previous.uppercased() == previous ? previous.lowercased() : previous.uppercased()
            } else {
                let withAstral = Int.random(in: 0..<25, using: &generator) == 0
                name = ""
                for _ in 0..<Int.random(in: 1...64, using: &generator) {
                    let pick = Int.random(in: 0..<100, using: &generator)
                    switch pick {
                    case 0..<70: name += ascii.randomElement(using: &generator)!
                    case 70..<78: name += punctuation.randomElement(using: &generator)!
                    case 78..<97: name += bmp.randomElement(using: &generator)!
                    default: name += withAstral ? astral.randomElement(using: &generator)! : "x"
                    }
                }
            }
            let contents = (0..<Int.random(in: 0...3000, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            files.append((name, contents))
        }
        return Case(files: files)
    }

    /// What the writer must do, derived from the documented rules only.
    static func predictedError(_ testCase: Case) -> ISO9660Error.Code? {
        var seen = Set<[UInt16]>()
        for (name, _) in testCase.files {
            let units = Array(name.utf16)
            if units.count > 64 || units.contains(where: { (0xD800...0xDFFF).contains($0) }) || name.utf8.last == UInt8(ascii: ".") {
                return .invalidFileName
            }
            if !seen.insert(units).inserted { return .duplicateFileName }
        }
        return nil
    }

    /// ECMA-119 9.3 from the standard's text: name, then extension, space-padded.
    static func ecma119Precedes(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        func parts(_ identifier: [UInt8]) -> ([UInt8], [UInt8]) {
            let withoutVersion = identifier.split(separator: UInt8(ascii: ";"), omittingEmptySubsequences: false)[0]
            let dot = withoutVersion.firstIndex(of: UInt8(ascii: "."))!
            return (Array(withoutVersion[..<dot]), Array(withoutVersion[(dot + 1)...]))
        }
        func padded(_ a: [UInt8], _ b: [UInt8]) -> ([UInt8], [UInt8]) {
            let length = max(a.count, b.count)
            return (a + [UInt8](repeating: 0x20, count: length - a.count), b + [UInt8](repeating: 0x20, count: length - b.count))
        }
        let (left, right) = (parts(lhs), parts(rhs))
        let names = padded(left.0, right.0)
        if names.0 != names.1 { return names.0.lexicographicallyPrecedes(names.1) }
        let extensions = padded(left.1, right.1)
        return extensions.0.lexicographicallyPrecedes(extensions.1)
    }

    @Test func randomNamesReadBackIdenticallyOrFailClearly() async throws {
        let directory = try TemporaryDirectory.make(prefix: "isofuzz")
        defer { directory.remove() }
        var generator = SeededGenerator(seed: Self.seed)
        var outcomes: [String: Int] = [:]
        for index in 0..<Self.caseCount {
            let testCase = Self.makeCase(&generator)
            let image = ISO9660Image(files: testCase.files.map { ISO9660File(name: $0.name, contents: $0.contents) },
                                     recordingDate: ISOReadBack.fixedDate)
            let names = testCase.files.map(\.name.debugDescription)
            if let expected = Self.predictedError(testCase) {
                let error = try #require(throws: ISO9660Error.self, "case \(index) \(names)") { try image.bytes() }
                #expect(error.code == expected, "case \(index) \(names): \(error)")
                #expect(error.message.hasPrefix("file name \"") || error.message.hasPrefix("two files are named \""), "case \(index): \(error)")
                outcomes[expected.rawValue, default: 0] += 1
                continue
            }
            let imagePath = directory.file("\(index).iso")
            try ISOReadBack.write(image, to: imagePath)
            let bytes = try image.bytes()
            let plainRecords = ISOReadBack.directoryRecords(bytes, descriptorSector: 16).dropFirst(2).map(\.identifier)
            #expect(zip(plainRecords, plainRecords.dropFirst()).allSatisfy { Self.ecma119Precedes($0, $1) }, "case \(index) plain order")
            let jolietRecords = ISOReadBack.directoryRecords(bytes, descriptorSector: 17).dropFirst(2).map(\.identifier)
            #expect(zip(jolietRecords, jolietRecords.dropFirst()).allSatisfy { $0.lexicographicallyPrecedes($1) }, "case \(index) Joliet order")
            let layout = try image.layout()
            let joliet = try await ISOReadBack.extractWithXorriso(imagePath, view: .joliet, into: directory.file("\(index)-j"))
            let expectedJoliet = Dictionary(uniqueKeysWithValues: testCase.files.map { (Array($0.name.utf8), $0.contents) })
            #expect(joliet == expectedJoliet, "case \(index) Joliet \(names)")
            let plain = try await ISOReadBack.extractWithXorriso(imagePath, view: .plain, into: directory.file("\(index)-p"))
            let expectedPlain = Dictionary(uniqueKeysWithValues: zip(layout.entries, testCase.files).map {
                (Array(ISOReadBack.xorrisoPlainName($0.plainIdentifier).utf8), $1.contents)
            })
            #expect(plain == expectedPlain, "case \(index) plain \(layout.entries.map(\.plainIdentifier))")
            outcomes["readBack", default: 0] += 1
        }
        // The generator must exercise both branches, or the test proves little.
        #expect(outcomes["readBack", default: 0] >= Self.caseCount / 2)
        #expect(outcomes["invalid-file-name", default: 0] >= 10)
        #expect(outcomes["duplicate-file-name", default: 0] >= 5)
        print("ISO name fuzz outcomes: \(outcomes.sorted { $0.key < $1.key })")
    }
}
