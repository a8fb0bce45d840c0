import ISO9660
import StackCore
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The STACKCFG disk as the orchestrator builds it (§4.5), read back by real tools.
@Suite struct StackConfigDiskTests {
    static let runtimeEnv = Array("""
        STACK_EMULATOR_PORT_PREFIX=81
        STACK_EMULATOR_DASHBOARD_HOST_PORT=8101
        STACK_EMULATOR_BACKEND_HOST_PORT=8102
        STACK_EMULATOR_MINIO_HOST_PORT=8104
        STACK_EMULATOR_INBUCKET_HOST_PORT=8105
        STACK_EMULATOR_VM_DIR_HOST=/home/dev/.stack/run/vm

        """.utf8)
    /// A base.env larger than one sector, so extents and padding matter.
    static let baseEnv = Array((0..<200).map { "STACK_KEY_\($0)=value-\($0)-\(String(repeating: "x", count: $0 % 17))\n" }.joined().utf8)

    static func stackConfigImage(runtimeEnv: [UInt8] = runtimeEnv) -> ISO9660Image {
        ISO9660Image(files: [ISO9660File(name: "runtime.env", contents: runtimeEnv),
                             ISO9660File(name: "base.env", contents: baseEnv)],
                     recordingDate: ISOReadBack.fixedDate)
    }

    /// §4.19-41: label STACKCFG, Joliet level 3, both names in both views, every byte
    /// identical through isoinfo's plain and Joliet extraction.
    @Test func stackConfigDiskReadsBackWithIsoinfo() async throws {
        let directory = try TemporaryDirectory.make(prefix: "iso")
        defer { directory.remove() }
        let imagePath = directory.file("stackcfg.iso")
        try ISOReadBack.write(Self.stackConfigImage(), to: imagePath)

        let description = try await ISOReadBack.tool("/usr/bin/isoinfo", ["-d", "-i", imagePath]).standardOutputText
        #expect(description.contains("Volume id: STACKCFG\n"))
        #expect(description.contains("Joliet with UCS level 3 found"))
        #expect(description.contains("Logical block size is: 2048"))

        #expect(try await ISOReadBack.isoinfoListing(imagePath, view: .plain) == ["BASE.ENV;1", "RUNTIME.ENV;1"])
        #expect(try await ISOReadBack.isoinfoListing(imagePath, view: .joliet) == ["base.env", "runtime.env"])

        for (plain, joliet, expected) in [("/RUNTIME.ENV;1", "/runtime.env", Self.runtimeEnv), ("/BASE.ENV;1", "/base.env", Self.baseEnv)] {
            let plainBytes = try await ISOReadBack.tool("/usr/bin/isoinfo", ["-i", imagePath, "-x", plain]).standardOutput
            let jolietBytes = try await ISOReadBack.tool("/usr/bin/isoinfo", ["-J", "-i", imagePath, "-x", joliet]).standardOutput
            #expect(plainBytes == expected, "plain \(plain)")
            #expect(jolietBytes == expected, "Joliet \(joliet)")
        }
    }

    /// §4.19-41: xorriso sees the label and extracts the same bytes from both trees.
    @Test func stackConfigDiskReadsBackWithXorriso() async throws {
        let directory = try TemporaryDirectory.make(prefix: "iso")
        defer { directory.remove() }
        let imagePath = directory.file("stackcfg.iso")
        try ISOReadBack.write(Self.stackConfigImage(), to: imagePath)

        let listing = try await ISOReadBack.tool("/usr/bin/xorriso", ["-indev", imagePath, "-pvd_info", "-ls", "/"])
        #expect(listing.standardOutputText.contains("'base.env'\n'runtime.env'\n"))
        #expect(listing.standardOutputText.contains("Volume Id    : STACKCFG"))

        let joliet = try await ISOReadBack.extractWithXorriso(imagePath, view: .joliet, into: directory.file("joliet"))
        #expect(joliet == [Array("runtime.env".utf8): Self.runtimeEnv, Array("base.env".utf8): Self.baseEnv])
        let plain = try await ISOReadBack.extractWithXorriso(imagePath, view: .plain, into: directory.file("plain"))
        #expect(plain == [Array("RUNTIME.ENV".utf8): Self.runtimeEnv, Array("BASE.ENV".utf8): Self.baseEnv])
    }

    /// §4.19-37 (the writer's part): the capture-mode runtime.env, whose last line is
    /// `STACK_EMULATOR_VM_DIR_HOST=` with an empty value, comes back byte for byte.
    @Test func captureModeRuntimeEnvKeepsEmptyVMDirHost() async throws {
        let directory = try TemporaryDirectory.make(prefix: "iso")
        defer { directory.remove() }
        let captureEnv = Array(Self.runtimeEnv.dropLast("/home/dev/.stack/run/vm\n".utf8.count)) + [0x0A]
        #expect(captureEnv.suffix(28) == Array("STACK_EMULATOR_VM_DIR_HOST=\n".utf8))
        let imagePath = directory.file("capture.iso")
        try ISOReadBack.write(Self.stackConfigImage(runtimeEnv: captureEnv), to: imagePath)
        let joliet = try await ISOReadBack.extractWithXorriso(imagePath, view: .joliet, into: directory.file("out"))
        #expect(joliet[Array("runtime.env".utf8)] == captureEnv)
    }

    /// §4.5: the documented native layout: descriptors at 16/17/18 (Joliet escape `%/E`
    /// at 88), path tables at 19–22 holding one 10-byte root entry, directories at 23
    /// and 24, files from 25 in input order, volume space size = sector count, and
    /// dates from the input (16 digits + zero offset; expiration/effective all `0`).
    @Test func stackConfigDiskFollowsTheNativeLayout() throws {
        let image = try Self.stackConfigImage().bytes()
        let layout = try Self.stackConfigImage().layout()
        #expect(image.count == layout.sectorCount * 2048)
        #expect(image[0..<(16 * 2048)].allSatisfy { $0 == 0 })
        #expect(Array(image[(16 * 2048)..<(16 * 2048 + 7)]) == [1] + Array("CD001".utf8) + [1])
        #expect(Array(image[(17 * 2048)..<(17 * 2048 + 7)]) == [2] + Array("CD001".utf8) + [1])
        #expect(Array(image[(18 * 2048)..<(18 * 2048 + 7)]) == [255] + Array("CD001".utf8) + [1])
        #expect(Array(image[(17 * 2048 + 88)..<(17 * 2048 + 91)]) == Array("%/E".utf8))
        #expect(Array(image[(16 * 2048 + 40)..<(16 * 2048 + 72)]) == Array("STACKCFG".utf8) + [UInt8](repeating: 0x20, count: 24))
        #expect(Array(image[(17 * 2048 + 40)..<(17 * 2048 + 56)]) == Array("STACKCFG".utf8).flatMap { [0, $0] })
        for sector in [16, 17] {
            #expect(ISOReadBack.littleEndian32(image, sector * 2048 + 80) == UInt32(layout.sectorCount))
            #expect(ISOReadBack.bigEndian32(image, sector * 2048 + 84) == UInt32(layout.sectorCount))
            #expect(ISOReadBack.littleEndian32(image, sector * 2048 + 132) == 10)
            #expect(Array(image[(sector * 2048 + 813)..<(sector * 2048 + 830)]) == Array("2024022913141500".utf8) + [0])
            #expect(Array(image[(sector * 2048 + 847)..<(sector * 2048 + 864)]) == Array("0000000000000000".utf8) + [0])
        }
        #expect(ISOReadBack.littleEndian32(image, 16 * 2048 + 140) == 19)
        #expect(ISOReadBack.bigEndian32(image, 16 * 2048 + 148) == 20)
        #expect(ISOReadBack.littleEndian32(image, 17 * 2048 + 140) == 21)
        #expect(ISOReadBack.bigEndian32(image, 17 * 2048 + 148) == 22)
        #expect(Array(image[(19 * 2048)..<(19 * 2048 + 10)]) == [1, 0, 23, 0, 0, 0, 1, 0, 0, 0])
        #expect(Array(image[(20 * 2048)..<(20 * 2048 + 10)]) == [1, 0, 0, 0, 0, 23, 0, 1, 0, 0])
        #expect(Array(image[(21 * 2048)..<(21 * 2048 + 10)]) == [1, 0, 24, 0, 0, 0, 1, 0, 0, 0])
        #expect(layout.plainDirectorySector == 23 && layout.jolietDirectorySector == 24)
        #expect(layout.entries.map(\.firstSector) == [25, 26])
        #expect(layout.entries.map(\.plainIdentifier) == ["RUNTIME.ENV;1", "BASE.ENV;1"])
        #expect(Array(image[(25 * 2048)..<(25 * 2048 + Self.runtimeEnv.count)]) == Self.runtimeEnv)
        #expect(Array(image[(26 * 2048)..<(26 * 2048 + Self.baseEnv.count)]) == Self.baseEnv)

        let plain = ISOReadBack.directoryRecords(image, descriptorSector: 16)
        #expect(plain.map(\.identifier) == [[0], [1], Array("BASE.ENV;1".utf8), Array("RUNTIME.ENV;1".utf8)])
        #expect(plain.map(\.dataLength) == [2048, 2048, UInt32(Self.baseEnv.count), UInt32(Self.runtimeEnv.count)])
        let joliet = ISOReadBack.directoryRecords(image, descriptorSector: 17)
        #expect(joliet.map(\.extent) == [24, 24, 26, 25])
        #expect(joliet[3].identifier == Array("runtime.env".utf16).flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] })
        // Recording date in every record: 2024-02-29 13:14:15 UTC.
        #expect(Array(image[(plain[2].offset + 18)..<(plain[2].offset + 25)]) == [124, 2, 29, 13, 14, 15, 0])
    }

    /// §4.19-41 on a real kernel: mount -o loop shows lowercase runtime.env and base.env
    /// with identical bytes and label STACKCFG. Runs only where root may loop-mount
    /// iso9660 (this sandbox's kernel lacks isofs, so it is disabled there).
    @Test(.enabled(if: KernelISO9660.mountable, "needs root and a kernel with iso9660 support"))
    func stackConfigDiskMountsOnLinux() async throws {
        let directory = try TemporaryDirectory.make(prefix: "iso")
        defer { directory.remove() }
        let imagePath = directory.file("stackcfg.iso")
        let mountPoint = directory.file("mnt")
        try POSIX.makeDirectories(mountPoint)
        try ISOReadBack.write(Self.stackConfigImage(), to: imagePath)
        try await ISOReadBack.tool("/bin/mount", ["-o", "loop,ro", imagePath, mountPoint])
        defer { umount2(mountPoint, Int32(MNT_DETACH)) }
        #expect(try POSIX.readFile(mountPoint + "/runtime.env") == Self.runtimeEnv)
        #expect(try POSIX.readFile(mountPoint + "/base.env") == Self.baseEnv)
        let label = try await ISOReadBack.tool("/sbin/blkid", ["-o", "value", "-s", "LABEL", imagePath]).standardOutputText
        #expect(label == "STACKCFG\n")
    }
}

enum KernelISO9660 {
    /// Root, a loop device, and iso9660 either loaded or available as a module.
    static let mountable: Bool = {
        guard getuid() == 0, POSIX.exists("/dev/loop-control") else { return false }
        if let filesystems = try? POSIX.readFile("/proc/filesystems"),
           String(decoding: filesystems, as: UTF8.self).contains("\tiso9660\n") { return true }
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return POSIX.exists("/lib/modules/\(release)/kernel/fs/isofs")
    }()
}
