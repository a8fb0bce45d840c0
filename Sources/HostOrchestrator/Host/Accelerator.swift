/// A QEMU accelerator (`-accel`).
public enum Accelerator: String, Sendable, Codable, CaseIterable {
    case kvm, hvf, tcg

    /// Hardware accelerators execute guest code natively; tcg translates it.
    public var isHardware: Bool { self != .tcg }
}

/// Why an accelerator was chosen, for the "Arch: … | Accel: …" line and for logs.
public struct AcceleratorChoice: Sendable, Equatable {
    public var accelerator: Accelerator
    public var reason: String

    public init(_ accelerator: Accelerator, reason: String) {
        self.accelerator = accelerator
        self.reason = reason
    }
}

/// The accelerator and CPU model rules (§4.3), with one deliberate change: KVM is used
/// only when a probe shows it really runs a guest, not merely when `/dev/kvm` is
/// writable (a nested-virtualisation `/dev/kvm` can exist and fail every real kernel).
public enum AcceleratorPolicy {
    /// `override` (EMULATOR_ACCEL) wins. Otherwise a hardware accelerator needs the guest
    /// architecture to equal the host's: on macOS `hvf` when QEMU lists it, on Linux
    /// `kvm` when `kvmVerdict` says it works; else `tcg`. The two closures run only when
    /// their answer matters (the KVM probe launches QEMU).
    public static func choose(
        guest: GuestArchitecture,
        host: HostPlatform,
        override: Accelerator?,
        hvfListed: () async -> Bool,
        kvmVerdict: () async -> AcceleratorVerdict
    ) async -> AcceleratorChoice {
        if let override {
            return AcceleratorChoice(override, reason: "EMULATOR_ACCEL=\(override.rawValue)")
        }
        guard guest == host.architecture else {
            return AcceleratorChoice(.tcg, reason: "\(guest.rawValue) guest on a \(host.architecture.rawValue) host needs emulation")
        }
        switch host.os {
        case .darwin:
            if await hvfListed() { return AcceleratorChoice(.hvf, reason: "QEMU lists hvf") }
            return AcceleratorChoice(.tcg, reason: "QEMU does not list hvf")
        case .linux:
            let verdict = await kvmVerdict()
            if verdict.usable { return AcceleratorChoice(.kvm, reason: "KVM probe: \(verdict.detail)") }
            return AcceleratorChoice(.tcg, reason: "KVM unusable: \(verdict.detail)")
        case .windows, .unknown:
            return AcceleratorChoice(.tcg, reason: "no hardware accelerator supported on \(host.os.rawValue)")
        }
    }

    /// `-cpu` value. amd64: `qemu64` when emulating on a non-amd64 host, else `max`.
    /// arm64: `max` with a hardware accelerator; under tcg `cortex-a76`, the model the
    /// image build uses for V8 stability under emulation (§5.4 #24).
    public static func cpuModel(guest: GuestArchitecture, host: HostPlatform, accelerator: Accelerator) -> String {
        switch guest {
        case .amd64:
            return accelerator == .tcg && host.architecture != .amd64 ? "qemu64" : "max"
        case .arm64:
            return accelerator == .tcg ? "cortex-a76" : "max"
        }
    }

    /// True when `-accel help` output lists `name` on a line of its own.
    public static func acceleratorListed(_ name: String, inHelpOutput output: String) -> Bool {
        output.split(whereSeparator: \.isNewline).contains { $0.trimmingSpaces == name }
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var result = self
        while let first = result.first, first == " " || first == "\t" { result = result.dropFirst() }
        while let last = result.last, last == " " || last == "\t" { result = result.dropLast() }
        return result
    }
}
