/// Everything that determines a QEMU command line (§4.8), as data. `QEMUCommandLine`
/// turns it into argv; `DeviceLayoutFingerprint` hashes its guest-visible part.
public struct MachineSpec: Sendable, Equatable {
    public enum Layout: Sendable, Equatable, Hashable {
        /// Balloon, virtfs at boot, `EMULATOR_RAM/CPUS`.
        case coldBoot
        /// Phantom drives, a `pcie-root-port` for the later 9p hot-plug and an `-fsdev`
        /// backend for it; `incoming` adds `-incoming defer` (resume), capture has none.
        case snapshot(incoming: Bool)

        public var isSnapshot: Bool {
            if case .snapshot = self { return true }
            return false
        }
    }

    /// `-kernel/-initrd/-append`: boots a kernel directly (the test guests). Accepted at
    /// resume even when absent at capture (docs/platform-facts.md).
    public struct DirectKernelBoot: Sendable, Equatable, Hashable {
        public var kernel: String
        public var initrd: String?
        public var commandLine: String?

        public init(kernel: String, initrd: String? = nil, commandLine: String? = nil) {
            self.kernel = kernel
            self.initrd = initrd
            self.commandLine = commandLine
        }
    }

    /// The files a running VM uses. All absolute.
    public struct Files: Sendable, Equatable, Hashable {
        public var disk: String
        public var runtimeISO: String
        public var seedPhantom: String
        public var bundlePhantom: String
        public var monitorSocket: String
        public var agentSocket: String
        public var serialLog: String
        public var pidFile: String
        /// `-D`: QEMU's own errors; with `-daemonize` they are visible nowhere else.
        public var qemuLog: String?

        public init(disk: String, runtimeISO: String, seedPhantom: String, bundlePhantom: String, monitorSocket: String,
                    agentSocket: String, serialLog: String, pidFile: String, qemuLog: String?) {
            self.disk = disk
            self.runtimeISO = runtimeISO
            self.seedPhantom = seedPhantom
            self.bundlePhantom = bundlePhantom
            self.monitorSocket = monitorSocket
            self.agentSocket = agentSocket
            self.serialLog = serialLog
            self.pidFile = pidFile
            self.qemuLog = qemuLog
        }

        /// The standard files in VM_DIR (`disk` may be replaced, e.g. by a capture's layer).
        public init(paths: EmulatorPaths) {
            self.init(disk: paths.overlayDisk, runtimeISO: paths.runtimeISO, seedPhantom: paths.seedPhantom,
                      bundlePhantom: paths.bundlePhantom, monitorSocket: paths.monitorSocket, agentSocket: paths.agentSocket,
                      serialLog: paths.serialLog, pidFile: paths.pidFile, qemuLog: paths.qemuLog)
        }
    }

    public var qemuExecutable: String
    public var machineType: String
    public var accelerator: Accelerator
    public var cpuModel: String
    /// `-bios` (arm64 UEFI firmware); nil on amd64.
    public var firmware: String?
    public var resources: MachineResources
    public var layout: Layout
    public var ports: PortConfiguration
    public var files: Files
    /// nil: no 9p export (and in the snapshot layout no `-fsdev`).
    public var hostShare: HostShare?
    public var kernelBoot: DirectKernelBoot?
    /// Adds `-device vmgenid,guid=auto`: a new generation ID at every start tells a
    /// resumed guest it is a clone. Part of the device layout (capture and resume must agree).
    public var vmGenerationID: Bool
    public var daemonize: Bool
    /// `-S`: do not start the vCPUs until `cont`.
    public var startPaused: Bool

    public init(qemuExecutable: String, machineType: String, accelerator: Accelerator, cpuModel: String, firmware: String? = nil,
                resources: MachineResources, layout: Layout, ports: PortConfiguration, files: Files, hostShare: HostShare?,
                kernelBoot: DirectKernelBoot? = nil, vmGenerationID: Bool = false, daemonize: Bool = true, startPaused: Bool = false) {
        self.qemuExecutable = qemuExecutable
        self.machineType = machineType
        self.accelerator = accelerator
        self.cpuModel = cpuModel
        self.firmware = firmware
        self.resources = resources
        self.layout = layout
        self.ports = ports
        self.files = files
        self.hostShare = hostShare
        self.kernelBoot = kernelBoot
        self.vmGenerationID = vmGenerationID
        self.daemonize = daemonize
        self.startPaused = startPaused
    }

    /// The spec the shell would build from `configuration`: cold boot uses
    /// `EMULATOR_RAM/CPUS`, the snapshot layout `EMULATOR_SNAPSHOT_RAM/CPUS` (§4.19-11).
    public init(configuration: EmulatorConfiguration, host: HostPlatform, accelerator: Accelerator,
                firmware: String?, layout: Layout) {
        self.init(
            qemuExecutable: configuration.architecture.qemuSystemBinary,
            machineType: configuration.architecture.machineType,
            accelerator: accelerator,
            cpuModel: AcceleratorPolicy.cpuModel(guest: configuration.architecture, host: host, accelerator: accelerator),
            firmware: firmware,
            resources: layout.isSnapshot ? configuration.snapshot : configuration.coldBoot,
            layout: layout,
            ports: configuration.ports,
            files: Files(paths: configuration.paths),
            hostShare: configuration.hostShare)
    }
}
