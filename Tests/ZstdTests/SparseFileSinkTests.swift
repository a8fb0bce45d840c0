@testable import Zstd
import StackCore
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The sparse writer against an exact model: with block-aligned chunks, holes are the
/// zero runs of at least the minimum length plus any trailing zero run, and the file's
/// data/hole map (SEEK_DATA/SEEK_HOLE) matches; odd chunk sizes still give identical bytes.
@Suite struct SparseFileSinkTests {
    /// Page kinds: 0 = zero page, 1 = data page.
    static let pattern: [Int] = [1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1,   // runs of 1, 9, 2
                                 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]  // 8 (crosses chunks), trailing 13

    static func bytes() -> [UInt8] {
        Self.pattern.enumerated().flatMap { index, kind in
            kind == 0 ? [UInt8](repeating: 0, count: 4096) : [UInt8](repeating: UInt8(index + 1), count: 4096)
        }
    }

    /// Data ranges (in pages) the model predicts for `minimumHolePages`.
    static func expectedDataPages(minimumHolePages: Int) -> [Range<Int>] {
        var isData = Self.pattern.map { $0 == 1 }
        var index = 0
        while index < Self.pattern.count {
            guard Self.pattern[index] == 0 else { index += 1; continue }
            let end = Self.pattern[index...].firstIndex(of: 1) ?? Self.pattern.count
            let short = end - index < minimumHolePages && end != Self.pattern.count
            for page in index..<end { isData[page] = short }
            index = end
        }
        var ranges: [Range<Int>] = []
        for (page, data) in isData.enumerated() where data {
            if let last = ranges.last, last.upperBound == page { ranges[ranges.count - 1] = last.lowerBound..<(page + 1) } else { ranges.append(page..<(page + 1)) }
        }
        return ranges
    }

    /// <unistd.h> defines these only with _GNU_SOURCE, which Swift's Glibc module lacks.
    static let seekData: Int32 = 3
    static let seekHole: Int32 = 4

    static func dataRanges(fd: Int32, size: off_t) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var position: off_t = 0
        while position < size {
            let data = lseek(fd, position, Self.seekData)
            if data < 0 { break }
            let hole = lseek(fd, data, Self.seekHole)
            ranges.append(Int(data / 4096)..<Int((hole + 4095) / 4096))
            position = hole
        }
        return ranges
    }

    @Test(arguments: [(4096, 4 * 4096), (8 * 4096, 4 * 4096), (8 * 4096, 3 * 4096 + 7), (32 * 1024, 1000)])
    func holesFollowTheModel(minimumHole: Int, chunkSize: Int) throws {
        let directory = try TemporaryDirectory.make(prefix: "sparse")
        defer { directory.remove() }
        let path = directory.file("out")
        let fd = try POSIX.open(path, O_RDWR | O_CREAT | O_TRUNC, mode: 0o644)
        defer { POSIX.close(fd) }
        let original = Self.bytes()
        var sink = try SparseFileSink(fd: fd, minimumHole: minimumHole)
        for start in stride(from: 0, to: original.count, by: chunkSize) {
            try original[start..<min(start + chunkSize, original.count)].withUnsafeBytes { try sink.write($0) }
        }
        try sink.finish()
        #expect(try POSIX.readFile(path) == original)
        fsync(fd)   // make the extent map final for SEEK_DATA
        let expected = Self.expectedDataPages(minimumHolePages: minimumHole / 4096)
        if chunkSize % 4096 == 0 {
            #expect(Self.dataRanges(fd: fd, size: off_t(original.count)) == expected)
            let dataPages = expected.reduce(0) { $0 + $1.count }
            #expect(sink.skippedBytes == UInt64((Self.pattern.count - dataPages) * 4096))
        } else {
            // Unaligned chunks split blocks at their edges, which are then written as
            // data: fewer holes, never more.
            let expectedHoles = UInt64((Self.pattern.count - expected.reduce(0) { $0 + $1.count }) * 4096)
            #expect(sink.skippedBytes <= expectedHoles)
        }
    }
}
