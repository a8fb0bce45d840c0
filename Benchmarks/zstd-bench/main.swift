// Drives the Zstd module for Benchmarks/zstd.sh (the script times it against the
// zstd CLI in the same run). Not shipped.
//
//   zstd-bench generate PATH MIB        RAM-like image: 65% zero, 20% random, 15% text pages,
//                                       in 64 KiB runs of one kind
//   zstd-bench compress IN OUT          IN/OUT may be "-" (stdin/stdout)
//   zstd-bench decompress IN OUT [--sparse]
import Zstd
#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String) -> Never {
    var standardError = FileHandleOutput(fd: 2)
    print("zstd-bench: \(message)", to: &standardError)
    exit(1)
}

struct FileHandleOutput: TextOutputStream {
    let fd: Int32
    mutating func write(_ string: String) {
        var text = string
        text.withUTF8 { _ = Glibc.write(fd, $0.baseAddress, $0.count) }
    }
}

func openInput(_ path: String) -> Int32 {
    if path == "-" { return 0 }
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { fail("open \(path): \(String(cString: strerror(errno)))") }
    return fd
}

func openOutput(_ path: String) -> Int32 {
    if path == "-" { return 1 }
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    if fd < 0 { fail("open \(path): \(String(cString: strerror(errno)))") }
    return fd
}

func mix(_ value: UInt64) -> UInt64 {
    var z = value &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

func generate(path: String, mebibytes: Int) {
    let fd = openOutput(path)
    let page = 4096
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
    defer { buffer.deallocate() }
    let words = buffer.baseAddress!.assumingMemoryBound(to: UInt64.self)
    for chunk in 0..<mebibytes {
        for pageInChunk in 0..<((1 << 20) / page) {
            let index = chunk * 256 + pageInChunk
            let kind = mix(UInt64(index / 16)) % 100
            let first = pageInChunk * page / 8
            for word in 0..<(page / 8) {
                if kind < 65 {
                    words[first + word] = 0
                } else if kind < 85 {
                    words[first + word] = mix(UInt64(index) << 12 | UInt64(word))
                } else {
                    words[first + word] = 0x6D65_6D6F_7279_2020 &+ UInt64(index &* 0x0101_0101 + word % 8)
                }
            }
        }
        var offset = 0
        while offset < buffer.count {
            let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if written < 0 { fail("write \(path): \(String(cString: strerror(errno)))") }
            offset += written
        }
    }
    close(fd)
}

let arguments = Array(CommandLine.arguments.dropFirst())
do {
    switch arguments.first {
    case "generate" where arguments.count == 3:
        guard let mebibytes = Int(arguments[2]) else { fail("MIB must be a number") }
        generate(path: arguments[1], mebibytes: mebibytes)
    case "compress" where arguments.count == 3:
        try ZstdCompressor().compress(from: openInput(arguments[1]), to: openOutput(arguments[2]))
    case "decompress" where arguments.count == 3 || (arguments.count == 4 && arguments[3] == "--sparse"):
        try ZstdDecompressor(sparse: arguments.count == 4).decompress(from: openInput(arguments[1]), to: openOutput(arguments[2]))
    default:
        fail("usage: zstd-bench generate PATH MIB | compress IN OUT | decompress IN OUT [--sparse]")
    }
} catch {
    fail("\(error)")
}
