import ISO9660
import StackCore
import StackProcess
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Reads images back with the real tools (isoinfo from genisoimage, xorriso) and with
/// a tiny independent directory parser for what the tools do not show (record layout).
enum ISOReadBack {
    enum View { case joliet, plain }

    static let fixedDate = try! ISO9660Timestamp(year: 2024, month: 2, day: 29, hour: 13, minute: 14, second: 15)

    static func write(_ image: ISO9660Image, to path: String) throws {
        let fd = try POSIX.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        defer { POSIX.close(fd) }
        try image.write { chunk in try POSIX.writeAll(fd, chunk, context: path) }
    }

    /// Runs a tool with a UTF-8 locale (xorriso converts Joliet names to the locale's
    /// charset) and fails the test with its stderr when it exits non-zero.
    @discardableResult
    static func tool(_ executable: String, _ arguments: [String]) async throws -> CommandOutput {
        let output = try await Command(executable, arguments: arguments,
                                       environment: ["PATH": Command.defaultSearchPath, "LC_ALL": "C.UTF-8"])
            .run(timeout: .seconds(60))
        guard output.status.isSuccess else {
            throw StackError(.systemCall, "\(executable) \(arguments) failed: \(output.standardErrorText)")
        }
        return output
    }

    /// `xorriso -extract /` of one view into a fresh directory; returns name bytes → contents.
    static func extractWithXorriso(_ imagePath: String, view: View, into directory: String) async throws -> [[UInt8]: [UInt8]] {
        var arguments = ["-abort_on", "FAILURE", "-osirrox", "on"]
        if view == .plain { arguments += ["-read_fs", "ecma119"] }
        arguments += ["-indev", imagePath, "-extract", "/", directory]
        try await tool("/usr/bin/xorriso", arguments)
        var files: [[UInt8]: [UInt8]] = [:]
        for name in try listDirectory(directory) {
            files[name] = try POSIX.readFile(directory + "/" + String(decoding: name, as: UTF8.self), limit: 64 << 20)
        }
        return files
    }

    /// Raw names (bytes as the kernel returns them, no Unicode normalisation).
    static func listDirectory(_ path: String) throws -> [[UInt8]] {
        guard let directory = opendir(path) else { throw StackError.systemCall("opendir \(path)", errno: errno) }
        defer { closedir(directory) }
        var names: [[UInt8]] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            if name != Array(".".utf8) && name != Array("..".utf8) { names.append(name) }
        }
        return names
    }

    /// How xorriso shows a plain identifier: without `;1` and without a trailing dot.
    static func xorrisoPlainName(_ identifier: String) -> String {
        var name = identifier
        if name.hasSuffix(";1") { name.removeLast(2) }
        if name.hasSuffix(".") { name.removeLast() }
        return name
    }

    /// File names of `isoinfo -l` (plain) or `isoinfo -J -l` in directory order.
    /// cdrkit's isoinfo knows no UTF-8 output charset: Joliet names come as Latin-1.
    static func isoinfoListing(_ imagePath: String, view: View) async throws -> [String] {
        let arguments = (view == .joliet ? ["-J", "-j", "iso8859-1"] : []) + ["-l", "-i", imagePath]
        let output = try await tool("/usr/bin/isoinfo", arguments).standardOutput
        let text = String(String.UnicodeScalarView(output.map { Unicode.Scalar($0) }))
        return text.split(separator: "\n").compactMap { line in
            // "----------   0    0    0     4 Feb 29 2024 [     25 00]  RUNTIME.ENV;1 "
            guard let bracket = line.firstRange(of: "]  ") else { return nil }
            let name = String(line[bracket.upperBound...]).trimmingTrailingSpace()
            return name == "." || name == ".." ? nil : name
        }
    }

    /// One parsed directory record of a directory extent.
    struct Record {
        let offset: Int
        let length: Int
        let extent: UInt32
        let dataLength: UInt32
        let identifier: [UInt8]
    }

    /// Walks the directory extent the volume descriptor at `descriptorSector` points to.
    static func directoryRecords(_ image: [UInt8], descriptorSector: Int) -> [Record] {
        let descriptor = descriptorSector * 2048
        let root = descriptor + 156
        let extent = Int(littleEndian32(image, root + 2))
        let length = Int(littleEndian32(image, root + 10))
        var records: [Record] = []
        var offset = extent * 2048
        let end = offset + length
        while offset < end {
            let recordLength = Int(image[offset])
            if recordLength == 0 {  // rest of this sector unused
                offset = (offset / 2048 + 1) * 2048
                continue
            }
            let identifierLength = Int(image[offset + 32])
            records.append(Record(offset: offset, length: recordLength,
                                  extent: littleEndian32(image, offset + 2), dataLength: littleEndian32(image, offset + 10),
                                  identifier: Array(image[(offset + 33)..<(offset + 33 + identifierLength)])))
            offset += recordLength
        }
        return records
    }

    static func littleEndian32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(bytes[offset + $1]) << (8 * $1) }
    }

    static func bigEndian32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 << 8 | UInt32(bytes[offset + $1]) }
    }
}

extension String {
    func trimmingTrailingSpace() -> String {
        var result = self
        while result.last == " " { result.removeLast() }
        return result
    }
}

/// Deterministic pseudo-random numbers (SplitMix64), so fuzz cases are reproducible.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
