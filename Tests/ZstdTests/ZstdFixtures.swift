import CSystem
import StackCore
import StackProcess
import TestSupport
import Testing
import Zstd
#if canImport(Glibc)
import Glibc
#endif

/// Deterministic RAM-image-like content, page by page: mostly zero pages (a fresh
/// guest's free memory), some incompressible random pages, some repetitive "text"
/// pages. Any byte range can be regenerated for verification without storing it.
struct RAMImage {
    static let pageSize = 4096
    let seed: UInt64
    /// Percent of zero and random pages; the rest is repetitive text.
    var zeroPercent: UInt64 = 65
    var randomPercent: UInt64 = 20
    /// Pages per run of one kind: 1 scatters kinds page by page (worst case for holes),
    /// 16 gives 64 KiB runs, closer to a real guest's untouched memory.
    var clusterPages = 1

    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    func fillPage(_ index: Int, _ page: UnsafeMutableRawPointer) {
        let kind = Self.mix(seed ^ UInt64(index / clusterPages)) % 100
        let words = page.assumingMemoryBound(to: UInt64.self)
        if kind < zeroPercent {
            page.initializeMemory(as: UInt8.self, repeating: 0, count: Self.pageSize)
        } else if kind < zeroPercent + randomPercent {
            var state = seed &+ UInt64(index) &* 0x1000_0000_01B3
            for word in 0..<(Self.pageSize / 8) {
                state = Self.mix(state)
                words[word] = state
            }
        } else {
            let stamp = UInt64(index) &* 0x0101_0101
            for word in 0..<(Self.pageSize / 8) { words[word] = 0x6D65_6D6F_7279_2020 &+ (stamp &+ UInt64(word % 8)) }
        }
    }

    /// Fills `buffer` with the bytes at `offset` (page-aligned) onwards.
    func fill(_ buffer: UnsafeMutableRawBufferPointer, offset: Int) {
        precondition(offset % Self.pageSize == 0 && buffer.count % Self.pageSize == 0)
        for page in 0..<(buffer.count / Self.pageSize) {
            fillPage(offset / Self.pageSize + page, buffer.baseAddress! + page * Self.pageSize)
        }
    }

    func bytes(count: Int) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: (count + Self.pageSize - 1) / Self.pageSize * Self.pageSize)
        result.withUnsafeMutableBytes { fill($0, offset: 0) }
        return Array(result.prefix(count))
    }
}

struct Pipe: Sendable {
    let readEnd: Int32
    let writeEnd: Int32

    init() throws {
        var fds: [Int32] = [-1, -1]
        let rc = cs_pipe(&fds)
        guard rc == 0 else { throw StackError.systemCall("pipe", errno: -rc) }
        readEnd = fds[0]
        writeEnd = fds[1]
    }
}

enum ZstdFixtures {
    static func writeFile(_ path: String, _ bytes: [UInt8]) throws {
        let fd = try POSIX.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        defer { POSIX.close(fd) }
        try POSIX.writeAll(fd, bytes, context: path)
    }

    static func readFile(_ path: String) throws -> [UInt8] {
        try POSIX.readFile(path, limit: 1 << 30)
    }

    /// Opens for reading / creating; the caller closes.
    static func openForReading(_ path: String) throws -> Int32 { try POSIX.open(path, O_RDONLY) }
    static func openForWriting(_ path: String) throws -> Int32 { try POSIX.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644) }

    static func fileStatus(_ path: String) throws -> stat {
        var status = stat()
        guard stat(path, &status) == 0 else { throw StackError.systemCall("stat \(path)", errno: errno) }
        return status
    }

    /// Runs a zstd CLI pipeline with `sh -c` and returns its result.
    @discardableResult
    static func shell(_ script: String) async throws -> String {
        try await TestShell.run(script, environment: ["PATH": Command.defaultSearchPath])
    }

    /// Blocks SIGPIPE on the current (test-owned) thread so a peer that closes early
    /// gives EPIPE instead of killing the test process.
    static func blockBrokenPipeSignal() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }
}
