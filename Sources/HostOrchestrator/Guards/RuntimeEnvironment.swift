import StackCore

/// The `runtime.env` of the STACKCFG disk (§4.5): six `KEY=value` lines in a fixed
/// order. Built here as data; the ISO writer packs it with `base.env`.
public struct RuntimeEnvironment: Sendable, Equatable {
    public var ports: PortConfiguration
    /// Absolute VM_DIR as the guest should write it back over 9p; empty in capture mode
    /// (a snapshot must not carry one host's path).
    public var vmDirectoryOnHost: String

    public init(ports: PortConfiguration, vmDirectoryOnHost: String) {
        self.ports = ports
        self.vmDirectoryOnHost = vmDirectoryOnHost
    }

    /// The capture-mode content: empty `STACK_EMULATOR_VM_DIR_HOST` (§4.19-37).
    public static func forCapture(ports: PortConfiguration) -> RuntimeEnvironment {
        RuntimeEnvironment(ports: ports, vmDirectoryOnHost: "")
    }

    public var envFile: EnvFile {
        EnvFile([
            "STACK_EMULATOR_PORT_PREFIX": ports.prefix,
            "STACK_EMULATOR_DASHBOARD_HOST_PORT": String(ports.dashboard),
            "STACK_EMULATOR_BACKEND_HOST_PORT": String(ports.backend),
            "STACK_EMULATOR_MINIO_HOST_PORT": String(ports.minio),
            "STACK_EMULATOR_INBUCKET_HOST_PORT": String(ports.inbucket),
            "STACK_EMULATOR_VM_DIR_HOST": vmDirectoryOnHost,
        ])
    }

    /// The file's bytes. Throws when the VM directory cannot be written in an env file
    /// (a newline in the path).
    public func rendered() throws -> [UInt8] {
        try HostError.translating { try envFile.rendered() }
    }
}
