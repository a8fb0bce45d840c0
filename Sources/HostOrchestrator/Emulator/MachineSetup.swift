import StackCore

/// The facts a launch depends on, gathered before anything is started: firmware (arm64),
/// the base image, the QEMU version (cached per binary), the accelerator (the KVM probe's
/// verdict is cached in RUN_DIR) and the optional direct-kernel-boot files. From them:
/// the `MachineSpec` of each layout and the `HostFacts` a snapshot must match.
struct MachineSetup: Sendable {
    let accelerator: AcceleratorChoice
    let qemuVersion: String
    let firmware: String?
    let kernelBoot: KernelBootFiles?
    let baseImage: BaseImageFingerprint

    static func gather(_ context: EmulatorContext) async throws -> MachineSetup {
        let configuration = context.configuration
        let paths = context.paths
        // Both fail before anything is launched (§4.19-6, §4.7).
        let firmware = try FirmwareLocator.firmware(for: configuration.architecture)
        let baseImage = try BaseImageFingerprint.of(paths.baseImage)
        let kernelBoot = try KernelBootFiles.discover(paths)
        let qemu = QEMUBinary(architecture: configuration.architecture, searchPath: configuration.executableSearchPath)
        let version = try await QEMUVersionCache(path: paths.qemuVersionCache).version(of: qemu)
        let accelerator = await AcceleratorPolicy.choose(for: configuration, host: context.host, qemu: qemu, qemuVersion: version)
        return MachineSetup(accelerator: accelerator, qemuVersion: version, firmware: firmware, kernelBoot: kernelBoot, baseImage: baseImage)
    }

    /// The spec of `layout`. A resume does not boot the kernel (its RAM holds it).
    func spec(_ layout: MachineSpec.Layout, configuration: EmulatorConfiguration, host: HostPlatform) -> MachineSpec {
        var spec = MachineSpec(configuration: configuration, host: host, accelerator: accelerator.accelerator,
                               firmware: firmware, layout: layout)
        if layout != .snapshot(incoming: true) {
            spec.kernelBoot = kernelBoot?.boot
        }
        return spec
    }

    /// What a snapshot for `spec` (snapshot layout) records and must match.
    func facts(for spec: MachineSpec) -> HostFacts {
        HostFacts(spec: spec, qemuVersion: qemuVersion, baseImage: baseImage, bootFiles: kernelBoot?.fingerprint)
    }
}
