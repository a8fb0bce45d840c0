/// The part of a QEMU command line a RAM snapshot depends on — machine, accelerator,
/// CPU model, RAM, SMP, and every guest-visible device in order — as a canonical
/// list and its SHA-256. Recorded at capture; a resume whose fingerprint differs is
/// not attempted (QEMU would exit with "Unknown savevm section", "Size mismatch", …).
///
/// Deliberately left out, because they may differ between capture and resume: file
/// paths (`file=`, `path=`), host forwards (other ports are accepted, docs/platform-facts.md), host-
/// only backends (`-chardev`, `-mon`, `-fsdev`), `-kernel/-initrd/-append` (accepted
/// at resume), `-incoming`, `-S`, `-daemonize`, `-pidfile`, `-D`, `-display`.
/// Unknown options are kept verbatim: when unsure, a difference counts.
public struct DeviceLayoutFingerprint: Sendable, Equatable, Hashable, Codable, CustomStringConvertible {
    public let components: [String]
    public let digest: String

    public init(arguments: [String]) {
        var components: [String] = []
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let option = arguments[index]
            index += 1
            if DeviceLayoutFingerprint.flags.contains(option) { continue }
            guard DeviceLayoutFingerprint.optionsWithValue.contains(option), index < arguments.endIndex else {
                components.append(option)
                continue
            }
            let value = arguments[index]
            index += 1
            switch option {
            case "-machine", "-accel", "-cpu", "-m", "-smp", "-boot", "-device":
                components.append("\(option) \(value)")
            case "-drive", "-virtfs":
                components.append("\(option) \(QEMUOptionList(parsing: value).removing(["file", "path"]).rendered)")
            case "-netdev":
                components.append("\(option) \(QEMUOptionList(parsing: value).removing(["hostfwd"]).rendered)")
            case "-bios", "-serial":
                components.append(option)
            default:
                continue
            }
        }
        self.components = components
        self.digest = SHA256.hex(components.joined(separator: "\n").utf8)
    }

    public init(_ spec: MachineSpec) {
        self.init(arguments: QEMUCommandLine(spec).arguments)
    }

    /// What differs, for a log line: components only in `self`, then only in `other`.
    public func differences(from other: DeviceLayoutFingerprint) -> [String] {
        let mine = Set(components), theirs = Set(other.components)
        var result = components.filter { !theirs.contains($0) }.map { "now: \($0)" }
        result += other.components.filter { !mine.contains($0) }.map { "captured: \($0)" }
        if result.isEmpty && components != other.components { result.append("same devices in a different order") }
        return result
    }

    public var description: String { digest }

    static let flags: Set<String> = ["-daemonize", "-S", "-no-reboot", "-nodefaults", "-no-user-config"]
    static let optionsWithValue: Set<String> = [
        "-machine", "-accel", "-cpu", "-bios", "-boot", "-kernel", "-initrd", "-append", "-m", "-smp", "-device",
        "-drive", "-netdev", "-virtfs", "-fsdev", "-chardev", "-mon", "-incoming", "-serial", "-display", "-D", "-pidfile",
    ]
}
