import StackCore

/// The aarch64 UEFI firmware for `-bios` (§4.3): the first existing of the known
/// locations (Homebrew, Debian qemu-efi-aarch64 / AAVMF layouts).
public enum FirmwareLocator {
    public static let aarch64Candidates = [
        "/opt/homebrew/share/qemu/edk2-aarch64-code.fd",
        "/usr/share/qemu/edk2-aarch64-code.fd",
        "/usr/share/AAVMF/AAVMF_CODE.fd",
        "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
    ]

    /// nil for amd64 (SeaBIOS is QEMU's default); throws `.firmwareMissing` for arm64
    /// when no candidate exists (§4.19-6), before anything is launched.
    public static func firmware(for architecture: GuestArchitecture, candidates: [String] = aarch64Candidates) throws -> String? {
        guard architecture == .arm64 else { return nil }
        for candidate in candidates where (try? FileSystem.status(candidate, followLinks: true))??.isRegularFile == true {
            return candidate
        }
        throw HostError(.firmwareMissing, "No aarch64 UEFI firmware found (looked in \(candidates.joined(separator: ", "))); install qemu-efi-aarch64 (Debian) or qemu (Homebrew)")
    }
}
