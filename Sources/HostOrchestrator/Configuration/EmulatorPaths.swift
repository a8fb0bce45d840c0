import StackCore

/// Every file and directory the orchestrator uses, derived in one place from
/// IMAGE_DIR, RUN_DIR and the guest architecture (§4.4). All paths are absolute
/// (QEMU's `-daemonize` changes directory to `/`).
public struct EmulatorPaths: Sendable, Equatable {
    public let imageDirectory: String
    public let runDirectory: String
    public let architecture: GuestArchitecture

    public init(imageDirectory: String, runDirectory: String, architecture: GuestArchitecture) {
        self.imageDirectory = imageDirectory
        self.runDirectory = runDirectory
        self.architecture = architecture
    }

    // MARK: IMAGE_DIR (survives `reset`)

    /// `stack-emulator-<a>.qcow2`, the read-only base image.
    public var baseImage: String { image("stack-emulator-\(architecture.rawValue).qcow2") }
    /// Direct kernel boot (optional, for small guests such as the demo guest): when
    /// `stack-emulator-<a>.kernel` exists beside the base image, cold boot and capture
    /// boot it with `-kernel`, plus `.initrd` and the one-line `.cmdline` when present.
    public var kernel: String { image("stack-emulator-\(architecture.rawValue).kernel") }
    public var initrd: String { image("stack-emulator-\(architecture.rawValue).initrd") }
    public var kernelCommandLine: String { image("stack-emulator-\(architecture.rawValue).cmdline") }
    /// `qemu-system-* --version`, remembered per binary (path, size, mtime).
    public var qemuVersionCache: String { run("qemu-version") }
    /// Root of the `SnapshotStore` for this architecture.
    public var snapshotStore: String { image("snapshots/stack-emulator-\(architecture.rawValue)") }

    // MARK: RUN_DIR (removed by `reset`)

    /// flock(2) target serialising start/stop/capture/reset (§5.4 #12).
    public var lockFile: String { run("lock") }
    /// Cached accelerator probe verdicts.
    public var acceleratorVerdicts: String { run("accelerator-verdicts.json") }
    /// Scratch space for the accelerator probe (firmware image, debug console log).
    public var probeDirectory: String { run("probe") }
    /// `RUN_DIR/vm`, mode 0700: it holds the QMP/QGA sockets (§5.4 #41).
    public var vmDirectory: String { run("vm") }

    // MARK: VM_DIR

    public var overlayDisk: String { vm("disk.qcow2") }
    public var overlayFingerprint: String { vm("base-image.fingerprint") }
    public var runtimeISO: String { vm("runtime-config.iso") }
    public var seedPhantom: String { vm("seed.phantom") }
    public var bundlePhantom: String { vm("bundle.phantom") }
    public var monitorSocket: String { vm("monitor.sock") }
    public var agentSocket: String { vm("qga.sock") }
    public var serialLog: String { vm("serial.log") }
    public var pidFile: String { vm("qemu.pid") }
    /// QEMU's own log (`-D`): under `-daemonize` its errors are visible nowhere else.
    public var qemuLog: String { vm("qemu.log") }
    public var internalPCK: String { vm("internal-pck") }
    /// What the last completed start left running (`SessionRecord`).
    public var sessionRecord: String { vm("session.json") }
    /// The serial console and QEMU log of a resume that failed, kept across the
    /// fallback cold boot (which truncates the live ones) for diagnosis (§5.4 #16).
    public var failedResumeSerialLog: String { vm("serial.resume-failed.log") }
    public var failedResumeQEMULog: String { vm("qemu.resume-failed.log") }
    public var stackLog: String { vm("stack.log") }

    /// Longest usable unix socket path on this platform (sun_path minus the NUL).
    public static let maximumSocketPathLength = 103

    /// Fails when a socket path would not fit in `sockaddr_un`: QEMU would fail later
    /// with a less helpful message.
    public func validateSocketPaths() throws {
        for socket in [monitorSocket, agentSocket] where socket.utf8.count > EmulatorPaths.maximumSocketPathLength {
            throw HostError(.invalidConfiguration, "Socket path \(socket) is \(socket.utf8.count) bytes, longer than the \(EmulatorPaths.maximumSocketPathLength) a unix socket allows; set EMULATOR_RUN_DIR (or STACK_EMULATOR_HOME) to a shorter directory")
        }
    }

    /// Creates RUN_DIR and VM_DIR; VM_DIR gets mode 0700 even if it existed, so only
    /// the owner can reach the QMP/QGA sockets created in it.
    public func prepareVMDirectory() throws {
        try FileSystem.makeDirectory(runDirectory, mode: 0o755)
        try FileSystem.makeDirectory(vmDirectory, mode: 0o700)
    }

    private func image(_ name: String) -> String { Path.join(imageDirectory, name) }
    private func run(_ name: String) -> String { Path.join(runDirectory, name) }
    private func vm(_ name: String) -> String { Path.join(vmDirectory, name) }
}

extension EmulatorPaths {
    /// What `stop` removes once QEMU is gone: pid file, sockets and the session record.
    /// The serial log and QEMU's log stay, so a failed resume can still be diagnosed
    /// (§5.4 #16); overlay, ISO and internal-pck stay too (§4.19-32).
    public func removeRuntimeFiles() throws {
        for path in [pidFile, monitorSocket, agentSocket, sessionRecord] {
            try FileSystem.removeFile(path)
        }
    }

    /// `reset`: the whole RUN_DIR; IMAGE_DIR (base image, snapshots) is untouched (§4.19-33).
    public func removeRunDirectory() throws {
        try FileSystem.removeTree(runDirectory)
    }

    /// The last `count` lines of the serial console, for failure messages (§4.10: 40).
    public func serialLogTail(lines count: Int = 40) -> [String] {
        LogTail.lastLines(of: serialLog, count: count)
    }
}
