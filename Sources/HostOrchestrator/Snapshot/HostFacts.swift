/// Everything a RAM snapshot's validity depends on, as it is now on this host. The
/// same facts are recorded at capture (`SnapshotMetadata`); a snapshot whose facts
/// differ is not tried (§5.4 #21, #23): a resume would fail or, worse, run a guest
/// whose baked-in ports or disk do not match.
public struct HostFacts: Sendable, Equatable, Codable {
    /// Migration streams are only trusted between identical QEMU versions.
    public var qemuVersion: String
    public var machine: String
    public var accelerator: Accelerator
    public var cpuModel: String
    public var memoryMiB: Int
    public var cpus: Int
    public var deviceLayout: DeviceLayoutFingerprint
    /// The base image under the snapshot's disk layer.
    public var baseImage: BaseImageFingerprint
    /// `PortConfiguration.fingerprint`: what the guest was told at capture.
    public var portConfiguration: String
    /// `DirectKernelBoot.fingerprint` of the kernel/initrd/command line the capture
    /// booted (nil without direct kernel boot): a rebuilt guest must not resume the RAM
    /// of the old one. Absent in metadata written before it existed.
    public var bootFiles: String?

    public init(qemuVersion: String, machine: String, accelerator: Accelerator, cpuModel: String, memoryMiB: Int, cpus: Int,
                deviceLayout: DeviceLayoutFingerprint, baseImage: BaseImageFingerprint, portConfiguration: String,
                bootFiles: String? = nil) {
        self.qemuVersion = qemuVersion
        self.machine = machine
        self.accelerator = accelerator
        self.cpuModel = cpuModel
        self.memoryMiB = memoryMiB
        self.cpus = cpus
        self.deviceLayout = deviceLayout
        self.baseImage = baseImage
        self.portConfiguration = portConfiguration
        self.bootFiles = bootFiles
    }

    /// The facts of a snapshot-layout `spec` (capture or resume: `-incoming` is not
    /// part of the device layout, so both give the same facts).
    public init(spec: MachineSpec, qemuVersion: String, baseImage: BaseImageFingerprint, bootFiles: String? = nil) {
        self.init(qemuVersion: qemuVersion, machine: spec.machineType, accelerator: spec.accelerator, cpuModel: spec.cpuModel,
                  memoryMiB: spec.resources.memoryMiB, cpus: spec.resources.cpus, deviceLayout: DeviceLayoutFingerprint(spec),
                  baseImage: baseImage, portConfiguration: spec.ports.fingerprint, bootFiles: bootFiles)
    }

    /// One phrase per differing fact, `now` against `captured`: empty when compatible.
    public func differences(fromCaptured captured: HostFacts) -> [String] {
        var result: [String] = []
        func compare<T: Equatable>(_ name: String, _ now: T, _ then: T) {
            if now != then { result.append("\(name) is \(now), the snapshot has \(then)") }
        }
        compare("QEMU version", qemuVersion, captured.qemuVersion)
        compare("machine", machine, captured.machine)
        compare("accelerator", accelerator.rawValue, captured.accelerator.rawValue)
        compare("CPU model", cpuModel, captured.cpuModel)
        compare("RAM (MiB)", memoryMiB, captured.memoryMiB)
        compare("vCPUs", cpus, captured.cpus)
        if deviceLayout.digest != captured.deviceLayout.digest {
            result.append("device layout differs (\(deviceLayout.differences(from: captured.deviceLayout).joined(separator: "; ")))")
        }
        compare("base image", baseImage.description, captured.baseImage.description)
        compare("port configuration", portConfiguration, captured.portConfiguration)
        if bootFiles != captured.bootFiles {
            result.append("the guest kernel/initrd is \(bootFiles ?? "not booted directly"), the snapshot has \(captured.bootFiles ?? "none")")
        }
        return result
    }
}
