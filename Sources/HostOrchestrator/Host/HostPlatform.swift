#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The two CPU architectures the emulator ships images for, named as the CLI names them.
public enum GuestArchitecture: String, Sendable, Codable, CaseIterable {
    case amd64
    case arm64

    /// Accepts the CLI names and the kernel's (`uname -m`) names.
    public init?(parsing raw: String) {
        switch raw {
        case "amd64", "x86_64": self = .amd64
        case "arm64", "aarch64": self = .arm64
        default: return nil
        }
    }

    /// The QEMU system emulator for this guest (looked up in PATH).
    public var qemuSystemBinary: String {
        switch self {
        case .amd64: "qemu-system-x86_64"
        case .arm64: "qemu-system-aarch64"
        }
    }

    /// `-machine` value (§4.3).
    public var machineType: String {
        switch self {
        case .amd64: "q35"
        case .arm64: "virt"
        }
    }
}

/// The host operating system, as `uname -s` reports it (§4.3).
public enum HostOS: String, Sendable, Codable {
    case darwin, linux, windows, unknown

    public init(unameSystem: String) {
        if unameSystem == "Darwin" { self = .darwin }
        else if unameSystem == "Linux" { self = .linux }
        else if unameSystem.hasPrefix("MINGW") || unameSystem.hasPrefix("MSYS") || unameSystem.hasPrefix("CYGWIN") { self = .windows }
        else { self = .unknown }
    }
}

/// What the host is: its CPU architecture, OS and kernel release (the release keys the
/// accelerator verdict cache, since a kernel update can fix or break KVM).
public struct HostPlatform: Sendable, Equatable {
    public var architecture: GuestArchitecture
    public var os: HostOS
    public var kernelRelease: String

    public init(architecture: GuestArchitecture, os: HostOS, kernelRelease: String) {
        self.architecture = architecture
        self.os = os
        self.kernelRelease = kernelRelease
    }

    /// Interprets `uname` fields; an unknown machine is an error (§4.19-2).
    public init(unameMachine: String, unameSystem: String, kernelRelease: String) throws {
        guard let architecture = GuestArchitecture(parsing: unameMachine) else {
            throw HostError(.unsupportedHost, "Unsupported host architecture: \(unameMachine) (the emulator runs on x86_64/amd64 and arm64/aarch64 hosts)")
        }
        self.init(architecture: architecture, os: HostOS(unameSystem: unameSystem), kernelRelease: kernelRelease)
    }

    /// The running host, from uname(2).
    public static func detect() throws -> HostPlatform {
        var names = utsname()
        guard uname(&names) == 0 else { throw HostError.systemCall("uname", errno: errno) }
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        }
        return try HostPlatform(unameMachine: field(names.machine), unameSystem: field(names.sysname),
                                kernelRelease: field(names.release))
    }
}
