import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads the files of an existing STACKCFG disk's root directory (plain ISO 9660 view,
/// names as `NAME.EXT;1`). Used for one thing: `capture` rewrites the disk without a
/// host directory but must keep the `base.env` the CLI packed into it, when no
/// `base.env` file is configured (the shell threw the CLI's disk away and needed its
/// own copy of the file and host ISO tools, §5.4 #42).
enum RuntimeDiskContents {
    static let sectorSize = 2048

    /// The file named `name` (case-insensitive, version suffix ignored); nil when the
    /// image is not ISO 9660 or has no such file.
    static func file(named name: String, in path: String, limit: Int = 16 << 20) -> [UInt8]? {
        guard let fd = try? POSIX.open(path, O_RDONLY | O_CLOEXEC) else { return nil }
        defer { POSIX.close(fd) }
        func read(_ offset: Int, _ count: Int) -> [UInt8]? {
            var buffer = [UInt8](repeating: 0, count: count)
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
            return n == count ? buffer : nil
        }
        func le32(_ bytes: [UInt8], _ at: Int) -> Int {
            Int(bytes[at]) | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2]) << 16 | Int(bytes[at + 3]) << 24
        }
        // The primary volume descriptor (sector 16) holds the root directory record at 156.
        guard let descriptor = read(16 * sectorSize, sectorSize), descriptor[0] == 1,
              Array(descriptor[1..<6]) == Array("CD001".utf8) else { return nil }
        let rootExtent = le32(descriptor, 156 + 2), rootLength = le32(descriptor, 156 + 10)
        guard rootLength > 0, rootLength <= 64 * sectorSize, let directory = read(rootExtent * sectorSize, rootLength) else { return nil }
        var offset = 0
        while offset < directory.count {
            let length = Int(directory[offset])
            if length == 0 {
                // Records never cross a sector boundary: the rest of this sector is padding.
                offset = (offset / sectorSize + 1) * sectorSize
                continue
            }
            guard offset + length <= directory.count, length >= 34 else { return nil }
            let nameLength = Int(directory[offset + 32])
            let isDirectory = directory[offset + 25] & 0x02 != 0
            if !isDirectory, offset + 33 + nameLength <= directory.count {
                var recorded = String(decoding: directory[(offset + 33)..<(offset + 33 + nameLength)], as: UTF8.self)
                if let semicolon = recorded.firstIndex(of: ";") { recorded = String(recorded[..<semicolon]) }
                if recorded.lowercased() == name.lowercased() {
                    let extent = le32(directory, offset + 2), size = le32(directory, offset + 10)
                    guard size <= limit else { return nil }
                    return size == 0 ? [] : read(extent * sectorSize, size)
                }
            }
            offset += length
        }
        return nil
    }
}
