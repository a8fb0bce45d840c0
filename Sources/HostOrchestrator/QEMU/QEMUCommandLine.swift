import StackProcess

/// The argv for a `MachineSpec`, in the order of §4.8. In the snapshot layout the
/// order is load-bearing: virtio PCI slots are assigned in command-line order and must
/// equal the capture's, and `pcie-root-port` must be the last explicit `-device`
/// (§4.19-8…12).
///
/// Values inside `key=value` lists are escaped (`QEMUOptionList`); options that take a
/// plain path (`-pidfile`, `-D`, `-bios`, `-kernel`, `-serial file:`) take it verbatim.
public struct QEMUCommandLine: Sendable, Equatable {
    public let executable: String
    public let arguments: [String]

    public init(_ spec: MachineSpec) {
        executable = spec.qemuExecutable
        var args: [String] = []
        func add(_ option: String, _ value: String) { args += [option, value] }
        func add(_ option: String, _ list: QEMUOptionList) { args += [option, list.rendered] }

        // Prefix.
        add("-machine", spec.machineType)
        add("-accel", spec.accelerator.rawValue)
        add("-cpu", spec.cpuModel)
        if let firmware = spec.firmware { add("-bios", firmware) }
        add("-boot", "order=c")
        if let boot = spec.kernelBoot {
            add("-kernel", boot.kernel)
            if let initrd = boot.initrd { add("-initrd", initrd) }
            if let commandLine = boot.commandLine { add("-append", commandLine) }
        }

        // 1. Resources (+ vmgenid, which has no PCI slot).
        add("-m", String(spec.resources.memoryMiB))
        add("-smp", String(spec.resources.cpus))
        if spec.vmGenerationID { add("-device", QEMUOptionList("vmgenid", [("guid", "auto")])) }

        // 2. Drives.
        func drive(_ file: String, format: String, readOnly: Bool) {
            var pairs: [(key: String, value: String)] = [("file", file), ("format", format), ("if", "virtio")]
            if readOnly { pairs.append(("readonly", "on")) }
            add("-drive", QEMUOptionList(nil, pairs))
        }
        drive(spec.files.disk, format: "qcow2", readOnly: false)
        if spec.layout.isSnapshot {
            drive(spec.files.seedPhantom, format: "raw", readOnly: true)
            drive(spec.files.bundlePhantom, format: "raw", readOnly: true)
        }
        drive(spec.files.runtimeISO, format: "raw", readOnly: true)

        // Network: every forward bound to 127.0.0.1 only (§4.19-12).
        var netdev = QEMUOptionList("user", [("id", "net0")])
        for forward in spec.ports.forwards {
            netdev.pairs.append(("hostfwd", "tcp:127.0.0.1:\(forward.hostPort)-:\(forward.guestPort)"))
        }
        add("-netdev", netdev)
        add("-device", QEMUOptionList("virtio-net-pci", [("netdev", "net0")]))

        if spec.layout == .coldBoot {
            add("-device", "virtio-balloon-pci")
            if let share = spec.hostShare {
                add("-virtfs", QEMUOptionList("local", [("path", share.root), ("mount_tag", HostShare.mountTag), ("security_model", "none")]
                                                + (share.readOnly ? [("readonly", "on")] : [])))
            }
        }

        // QMP and QGA.
        add("-chardev", QEMUOptionList("socket", [("id", "monitor"), ("path", spec.files.monitorSocket), ("server", "on"), ("wait", "off")]))
        add("-mon", QEMUOptionList(nil, [("chardev", "monitor"), ("mode", "control")]))
        add("-chardev", QEMUOptionList("socket", [("path", spec.files.agentSocket), ("server", "on"), ("wait", "off"), ("id", "qga0")]))
        add("-device", "virtio-serial")
        add("-device", QEMUOptionList("virtserialport", [("chardev", "qga0"), ("name", "org.qemu.guest_agent.0")]))

        if case .snapshot(let incoming) = spec.layout {
            add("-device", QEMUOptionList("pcie-root-port", [("id", "hostfs-port"), ("bus", "pcie.0"), ("chassis", "1")]))
            if let share = spec.hostShare {
                add("-fsdev", QEMUOptionList("local", [("id", HostShare.mountTag), ("path", share.root), ("security_model", "none")]
                                               + (share.readOnly ? [("readonly", "on")] : [])))
            }
            if incoming { add("-incoming", "defer") }
        }
        if spec.startPaused { args.append("-S") }

        // Tail.
        add("-serial", "file:" + spec.files.serialLog)
        add("-display", "none")
        if let log = spec.files.qemuLog { add("-D", log) }
        if spec.daemonize { args.append("-daemonize") }
        add("-pidfile", spec.files.pidFile)
        arguments = args
    }

    /// The process to launch; only PATH is passed on. It leads its own process group, so
    /// a terminal's Ctrl-C reaches only `stack-emulator`, which stops it in order
    /// (cancellation signals the group).
    public func command(searchPath: String) -> Command {
        Command(executable, arguments: arguments, environment: ["PATH": searchPath], processGroup: .new)
    }

    /// `executable` + arguments, for logs and tests.
    public var argv: [String] { [executable] + arguments }
}
