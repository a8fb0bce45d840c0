import StackCore

/// The optional direct-kernel-boot files beside the base image (`EmulatorPaths.kernel`,
/// `.initrd`, `.cmdline`). A product image boots from its disk and has none; a small
/// guest such as the demo guest ships a kernel and an initramfs and boots them with
/// `-kernel/-initrd/-append`, which is much faster under TCG than firmware + bootloader.
///
/// Cold boot and capture pass them to QEMU; a resume does not (the RAM state already
/// holds the booted kernel, and QEMU 7.2 accepts the options being absent, docs/platform-facts.md).
public struct KernelBootFiles: Sendable, Equatable {
    public let boot: MachineSpec.DirectKernelBoot
    /// Size and mtime of kernel and initrd plus the command line: a snapshot records it
    /// (`HostFacts.bootFiles`), so a rebuilt guest is not resumed from the old one's RAM.
    public let fingerprint: String

    /// nil when there is no kernel file; throws when a file exists but cannot be read.
    public static func discover(_ paths: EmulatorPaths) throws -> KernelBootFiles? {
        guard let kernel = try FileSystem.status(paths.kernel, followLinks: true), kernel.isRegularFile else { return nil }
        var parts = ["kernel \(kernel.size):\(kernel.modificationSeconds).\(kernel.modificationNanoseconds)"]
        var initrdPath: String?
        if let initrd = try FileSystem.status(paths.initrd, followLinks: true), initrd.isRegularFile {
            initrdPath = paths.initrd
            parts.append("initrd \(initrd.size):\(initrd.modificationSeconds).\(initrd.modificationNanoseconds)")
        }
        var commandLine: String?
        if try FileSystem.status(paths.kernelCommandLine, followLinks: true) != nil {
            let text = try FileSystem.readText(paths.kernelCommandLine, limit: 64 * 1024)
            let line = text.split(whereSeparator: \.isNewline).first.map { String($0).trimmingWhitespace } ?? ""
            if !line.isEmpty {
                commandLine = line
                parts.append("cmdline \(SHA256.hex(line.utf8).prefix(16))")
            }
        }
        return KernelBootFiles(boot: MachineSpec.DirectKernelBoot(kernel: paths.kernel, initrd: initrdPath, commandLine: commandLine),
                               fingerprint: parts.joined(separator: "; "))
    }
}
