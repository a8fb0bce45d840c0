import StackCore

/// Everything the orchestrator is told by its environment (§4.2), read once at the
/// edge from an explicit dictionary and validated, so a typo fails fast with
/// `Invalid <NAME>: <raw>` instead of surfacing later as a QEMU error.
///
/// Differences from the shell, on purpose: values are validated (the shell validated
/// nothing; the CLI only the four ports); an empty `PORT_PREFIX` means unset in every
/// consumer (§5.4 #43); the 9p share is the home directory, not `/` (§5.4 #40, see
/// `HostShare`); relative directories are made absolute (QEMU's `-daemonize` runs in `/`).
public struct EmulatorConfiguration: Sendable, Equatable {
    /// The variables read, by name.
    public enum Variable {
        public static let home = "HOME"
        public static let emulatorHome = "STACK_EMULATOR_HOME"
        public static let imageDirectory = "EMULATOR_IMAGE_DIR"
        public static let runDirectory = "EMULATOR_RUN_DIR"
        public static let architecture = "EMULATOR_ARCH"
        public static let memory = "EMULATOR_RAM"
        public static let cpus = "EMULATOR_CPUS"
        public static let snapshotMemory = "EMULATOR_SNAPSHOT_RAM"
        public static let snapshotCPUs = "EMULATOR_SNAPSHOT_CPUS"
        public static let portPrefix = "PORT_PREFIX"
        public static let publicPortPrefix = "NEXT_PUBLIC_STACK_PORT_PREFIX"
        public static let dashboardPort = "EMULATOR_DASHBOARD_PORT"
        public static let backendPort = "EMULATOR_BACKEND_PORT"
        public static let minioPort = "EMULATOR_MINIO_PORT"
        public static let inbucketPort = "EMULATOR_INBUCKET_PORT"
        public static let readyTimeout = "EMULATOR_READY_TIMEOUT"
        public static let snapshotReadyTimeout = "EMULATOR_SNAPSHOT_READY_TIMEOUT"
        public static let noSnapshot = "EMULATOR_NO_SNAPSHOT"
        public static let noRotation = "EMULATOR_NO_ROTATION"
        public static let forceCapture = "EMULATOR_FORCE_CAPTURE"
        public static let accelerator = "EMULATOR_ACCEL"
        public static let cliWroteISO = "STACK_EMULATOR_CLI_WROTE_ISO"
        public static let hostShare = "EMULATOR_HOST_SHARE"
        public static let hostShareReadOnly = "EMULATOR_HOST_SHARE_READONLY"
        public static let baseEnvironment = "EMULATOR_BASE_ENV"
        public static let incomingTimeout = "EMULATOR_INCOMING_TIMEOUT"
        public static let agentTimeout = "EMULATOR_AGENT_TIMEOUT"
        public static let mountTimeout = "EMULATOR_MOUNT_TIMEOUT"
        public static let rotationTimeout = "EMULATOR_ROTATION_TIMEOUT"
        public static let stopTimeout = "EMULATOR_STOP_TIMEOUT"
        public static let path = "PATH"
    }

    public var architecture: GuestArchitecture
    public var imageDirectory: String
    public var runDirectory: String
    /// `EMULATOR_RAM`/`EMULATOR_CPUS`: cold boot only.
    public var coldBoot: MachineResources
    /// `EMULATOR_SNAPSHOT_RAM`/`_CPUS`: capture and resume (must match the capture).
    public var snapshot: MachineResources
    public var ports: PortConfiguration
    /// Per cold-boot wait phase and for capture.
    public var readyTimeout: Duration
    /// Post-resume readiness.
    public var snapshotReadyTimeout: Duration
    public var noSnapshot: Bool
    public var noRotation: Bool
    public var forceCapture: Bool
    /// `STACK_EMULATOR_CLI_WROTE_ISO=1`: the CLI already wrote the runtime ISO.
    public var cliWroteRuntimeISO: Bool
    /// `EMULATOR_ACCEL`: skips detection and probing.
    public var acceleratorOverride: Accelerator?
    /// nil when the share is off.
    public var hostShare: HostShare?
    /// Where `qemu-system-*` and `qemu-img` are looked up.
    public var executableSearchPath: String
    /// `EMULATOR_BASE_ENV` (default `IMAGE_DIR/base.env`): the `base.env` packed into the
    /// STACKCFG disk next to `runtime.env` (§4.5; upstream `docker/local-emulator/.env.development`).
    public var baseEnvironmentFile: String
    /// The deadlines of the resume steps (§4.10) and of `stop`.
    public var deadlines: EmulatorDeadlines

    public var paths: EmulatorPaths {
        EmulatorPaths(imageDirectory: imageDirectory, runDirectory: runDirectory, architecture: architecture)
    }

    public static let defaultReadyTimeout: Duration = .seconds(240)
    public static let defaultSnapshotReadyTimeout: Duration = .seconds(45)

    /// Reads `environment` (never the process environment). `currentDirectory` anchors
    /// relative directories; `host` supplies the default architecture.
    public init(environment: [String: String], host: HostPlatform, currentDirectory: String) throws {
        let reader = EnvironmentReader(environment)

        let emulatorHome: String? = {
            if let explicit = reader.nonEmpty(Variable.emulatorHome) { return explicit }
            guard let home = reader.nonEmpty(Variable.home) else { return nil }
            return Path.join(home, ".stack/emulator")
        }()
        func directory(_ name: String, _ leaf: String) throws -> String {
            if let explicit = reader.nonEmpty(name) {
                return FileSystem.absolute(explicit, base: currentDirectory)
            }
            guard let emulatorHome else {
                throw HostError(.invalidConfiguration, "Cannot place \(name): neither \(name), \(Variable.emulatorHome) nor \(Variable.home) is set")
            }
            return FileSystem.absolute(Path.join(emulatorHome, leaf), base: currentDirectory)
        }
        imageDirectory = try directory(Variable.imageDirectory, "images")
        runDirectory = try directory(Variable.runDirectory, "run")

        if let raw = reader.nonEmpty(Variable.architecture) {
            guard let parsed = GuestArchitecture(parsing: raw) else {
                throw HostError(.invalidConfiguration, "Invalid \(Variable.architecture): \(raw) (expected arm64 or amd64)")
            }
            architecture = parsed
        } else {
            architecture = host.architecture
        }

        coldBoot = MachineResources(
            memoryMiB: try reader.integer(Variable.memory, default: MachineResources.default.memoryMiB, in: 64...1_048_576, unit: "MiB"),
            cpus: try reader.integer(Variable.cpus, default: MachineResources.default.cpus, in: 1...255, unit: "vCPUs"))
        snapshot = MachineResources(
            memoryMiB: try reader.integer(Variable.snapshotMemory, default: MachineResources.default.memoryMiB, in: 64...1_048_576, unit: "MiB"),
            cpus: try reader.integer(Variable.snapshotCPUs, default: MachineResources.default.cpus, in: 1...255, unit: "vCPUs"))

        let prefixVariable = reader.nonEmpty(Variable.portPrefix) != nil ? Variable.portPrefix : Variable.publicPortPrefix
        let prefix = reader.nonEmpty(prefixVariable) ?? PortConfiguration.defaultPrefix
        guard PortConfiguration.isValidPrefix(prefix) else {
            throw HostError(.invalidConfiguration, "Invalid \(prefixVariable): \(prefix) (expected 1-655 without a leading zero, so that <P>01, <P>02 and <P>14 are valid ports)")
        }
        ports = try PortConfiguration(
            prefix: prefix,
            dashboard: try reader.port(Variable.dashboardPort, default: PortConfiguration.default.dashboard),
            backend: try reader.port(Variable.backendPort, default: PortConfiguration.default.backend),
            minio: try reader.port(Variable.minioPort, default: PortConfiguration.default.minio),
            inbucket: try reader.port(Variable.inbucketPort, default: PortConfiguration.default.inbucket))

        readyTimeout = .seconds(try reader.integer(Variable.readyTimeout, default: 240, in: 1...86_400, unit: "seconds"))
        snapshotReadyTimeout = .seconds(try reader.integer(Variable.snapshotReadyTimeout, default: 45, in: 1...86_400, unit: "seconds"))

        noSnapshot = try reader.flag(Variable.noSnapshot)
        noRotation = try reader.flag(Variable.noRotation)
        forceCapture = try reader.flag(Variable.forceCapture)
        cliWroteRuntimeISO = try reader.flag(Variable.cliWroteISO)

        if let raw = reader.nonEmpty(Variable.accelerator) {
            guard let parsed = Accelerator(rawValue: raw) else {
                throw HostError(.invalidConfiguration, "Invalid \(Variable.accelerator): \(raw) (expected kvm, hvf or tcg)")
            }
            acceleratorOverride = parsed
        } else {
            acceleratorOverride = nil
        }

        let shareReadOnly = try reader.flag(Variable.hostShareReadOnly)
        switch reader.nonEmpty(Variable.hostShare) {
        case "off"?, "none"?:
            hostShare = nil
        case let raw?:
            guard raw.hasPrefix("/") else {
                throw HostError(.invalidConfiguration, "Invalid \(Variable.hostShare): \(raw) (expected an absolute directory, or off)")
            }
            hostShare = HostShare(root: FileSystem.absolute(raw, base: "/"), readOnly: shareReadOnly)
        case nil:
            hostShare = reader.nonEmpty(Variable.home).map { HostShare(root: FileSystem.absolute($0, base: currentDirectory), readOnly: shareReadOnly) }
        }

        executableSearchPath = reader.nonEmpty(Variable.path) ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

        baseEnvironmentFile = reader.nonEmpty(Variable.baseEnvironment).map { FileSystem.absolute($0, base: currentDirectory) }
            ?? Path.join(imageDirectory, "base.env")
        func seconds(_ name: String, _ defaultValue: Duration) throws -> Duration {
            .seconds(try reader.integer(name, default: Int(defaultValue.components.seconds), in: 1...86_400, unit: "seconds"))
        }
        let defaults = EmulatorDeadlines()
        deadlines = EmulatorDeadlines(
            incoming: try seconds(Variable.incomingTimeout, defaults.incoming),
            agent: try seconds(Variable.agentTimeout, defaults.agent),
            mount: try seconds(Variable.mountTimeout, defaults.mount),
            rotation: try seconds(Variable.rotationTimeout, defaults.rotation),
            stop: try seconds(Variable.stopTimeout, defaults.stop))

        try paths.validateSocketPaths()
    }
}

/// How long each step of a resume (§4.10) and a stop may take. Each is a deadline for
/// an observable event (a QMP event, an agent reply, a guest process exit, a pid),
/// never a sleep.
public struct EmulatorDeadlines: Sendable, Equatable {
    /// `migrate-incoming` until QEMU reports the load complete (§4.10 step 6.4: 60 s).
    public var incoming: Duration
    /// The guest agent answering `guest-sync` after a resume or boot (6.5: 30 s).
    public var agent: Duration
    /// Hot-plug + `mount-host-fs --post-resume` (6.7: 20 s).
    public var mount: Duration
    /// `trigger-fast-rotate` (6.9: 60 s).
    public var rotation: Duration
    /// `stop`: from `system_powerdown` until QEMU has exited, before SIGTERM.
    public var stop: Duration

    public init(incoming: Duration = .seconds(60), agent: Duration = .seconds(30), mount: Duration = .seconds(20),
                rotation: Duration = .seconds(60), stop: Duration = .seconds(8)) {
        self.incoming = incoming
        self.agent = agent
        self.mount = mount
        self.rotation = rotation
        self.stop = stop
    }
}

/// Typed reads of environment variables with the CLI's error wording.
struct EnvironmentReader {
    let environment: [String: String]

    init(_ environment: [String: String]) { self.environment = environment }

    /// The value, with empty treated as unset (the shell's `${X:-default}`).
    func nonEmpty(_ name: String) -> String? {
        guard let value = environment[name], !value.isEmpty else { return nil }
        return value
    }

    func port(_ name: String, default defaultValue: UInt16) throws -> UInt16 {
        guard let raw = nonEmpty(name) else { return defaultValue }
        guard let value = Self.decimal(raw), value >= 1, value <= 65_535 else {
            throw HostError(.invalidConfiguration, "Invalid \(name): \(raw) (expected a port number 1-65535)")
        }
        return UInt16(value)
    }

    func integer(_ name: String, default defaultValue: Int, in range: ClosedRange<Int>, unit: String) throws -> Int {
        guard let raw = nonEmpty(name) else { return defaultValue }
        guard let value = Self.decimal(raw), range.contains(value) else {
            throw HostError(.invalidConfiguration, "Invalid \(name): \(raw) (expected a whole number of \(unit), \(range.lowerBound)-\(range.upperBound))")
        }
        return value
    }

    /// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`/empty; anything else is an error
    /// (the shell silently read every value but `1` as false).
    func flag(_ name: String) throws -> Bool {
        guard let raw = nonEmpty(name) else { return false }
        switch raw.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw HostError(.invalidConfiguration, "Invalid \(name): \(raw) (expected 1 or 0)")
        }
    }

    /// Plain decimal digits only: no sign, no spaces, no `0x`, at most 9 digits.
    static func decimal(_ raw: String) -> Int? {
        guard !raw.isEmpty, raw.utf8.count <= 9, raw.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(raw)
    }
}
