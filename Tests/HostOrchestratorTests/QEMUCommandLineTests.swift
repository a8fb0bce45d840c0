import Testing
@testable import HostOrchestrator

@Suite struct QEMUCommandLineTests {
    let host = HostPlatform(architecture: .amd64, os: .linux, kernelRelease: "6.1")

    func spec(_ layout: MachineSpec.Layout, _ environment: [String: String] = [:], accelerator: Accelerator = .kvm) throws -> MachineSpec {
        let config = try EmulatorConfiguration(environment: ["HOME": "/home/dev", "EMULATOR_HOST_SHARE": "/"].merging(environment) { $1 },
                                               host: host, currentDirectory: "/")
        return MachineSpec(configuration: config, host: host, accelerator: accelerator, firmware: nil, layout: layout)
    }

    static let vm = "/home/dev/.stack/emulator/run/vm"
    static let network = [
        "-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:26700-:8101,hostfwd=tcp:127.0.0.1:26701-:8102,hostfwd=tcp:127.0.0.1:26702-:9090,hostfwd=tcp:127.0.0.1:26703-:9001,hostfwd=tcp:127.0.0.1:8114-:8114",
        "-device", "virtio-net-pci,netdev=net0",
    ]
    static let control = [
        "-chardev", "socket,id=monitor,path=\(vm)/monitor.sock,server=on,wait=off", "-mon", "chardev=monitor,mode=control",
        "-chardev", "socket,path=\(vm)/qga.sock,server=on,wait=off,id=qga0", "-device", "virtio-serial",
        "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
    ]
    static let tail = ["-serial", "file:\(vm)/serial.log", "-display", "none", "-D", "\(vm)/qemu.log", "-daemonize", "-pidfile", "\(vm)/qemu.pid"]
    static let prefix = ["-machine", "q35", "-accel", "kvm", "-cpu", "max", "-boot", "order=c"]

    /// §4.19-8: cold-boot argv, order and values (plus `-D`, our one addition).
    @Test func coldBootArgvMatchesTheSpecifiedOrder() throws {
        let argv = QEMUCommandLine(try spec(.coldBoot)).argv
        let expected = ["qemu-system-x86_64"] + Self.prefix + ["-m", "4096", "-smp", "4",
            "-drive", "file=\(Self.vm)/disk.qcow2,format=qcow2,if=virtio",
            "-drive", "file=\(Self.vm)/runtime-config.iso,format=raw,if=virtio,readonly=on"]
            + Self.network + ["-device", "virtio-balloon-pci", "-virtfs", "local,path=/,mount_tag=hostfs,security_model=none"]
            + Self.control + Self.tail
        #expect(argv == expected)
    }

    /// §4.19-9: resume argv incl. phantoms, pcie-root-port last, -fsdev, -incoming defer.
    @Test func resumeArgvMatchesTheSnapshotLayout() throws {
        let argv = QEMUCommandLine(try spec(.snapshot(incoming: true))).argv
        let expected = ["qemu-system-x86_64"] + Self.prefix + ["-m", "4096", "-smp", "4",
            "-drive", "file=\(Self.vm)/disk.qcow2,format=qcow2,if=virtio",
            "-drive", "file=\(Self.vm)/seed.phantom,format=raw,if=virtio,readonly=on",
            "-drive", "file=\(Self.vm)/bundle.phantom,format=raw,if=virtio,readonly=on",
            "-drive", "file=\(Self.vm)/runtime-config.iso,format=raw,if=virtio,readonly=on"]
            + Self.network + Self.control
            + ["-device", "pcie-root-port,id=hostfs-port,bus=pcie.0,chassis=1",
               "-fsdev", "local,id=hostfs,path=/,security_model=none", "-incoming", "defer"] + Self.tail
        #expect(argv == expected)
        let devices = zip(argv, argv.dropFirst()).filter { $0.0 == "-device" }.map(\.1)
        #expect(devices.last == "pcie-root-port,id=hostfs-port,bus=pcie.0,chassis=1")
        #expect(!argv.contains("virtio-balloon-pci") && !argv.contains("-virtfs"))
    }

    /// §4.19-10.
    @Test func captureArgvIsResumeArgvWithoutIncoming() throws {
        var resume = QEMUCommandLine(try spec(.snapshot(incoming: true))).argv
        let capture = QEMUCommandLine(try spec(.snapshot(incoming: false))).argv
        let incoming = try #require(resume.firstIndex(of: "-incoming"))
        resume.removeSubrange(incoming...incoming + 1)
        #expect(capture == resume)
    }

    /// §4.19-11.
    @Test func snapshotLayoutUsesSnapshotResourcesOnly() throws {
        let environment = ["EMULATOR_RAM": "2048", "EMULATOR_CPUS": "2"]
        let snapshot = QEMUCommandLine(try spec(.snapshot(incoming: true), environment)).arguments
        #expect(snapshot.contains(["-m", "4096", "-smp", "4"]))
        let cold = QEMUCommandLine(try spec(.coldBoot, environment)).arguments
        #expect(cold.contains(["-m", "2048", "-smp", "2"]))
        let pinned = QEMUCommandLine(try spec(.snapshot(incoming: false), ["EMULATOR_SNAPSHOT_RAM": "1024", "EMULATOR_SNAPSHOT_CPUS": "1"])).arguments
        #expect(pinned.contains(["-m", "1024", "-smp", "1"]))
    }

    /// §4.19-12 / §5.5-7: loopback only; `<P>14` on both sides.
    @Test func everyForwardBindsLoopbackAndMockOAuthUsesTheSamePort() throws {
        let argv = QEMUCommandLine(try spec(.coldBoot, ["PORT_PREFIX": "92", "EMULATOR_DASHBOARD_PORT": "3000"])).arguments
        let netdev = QEMUOptionList(parsing: try #require(argv.firstIndex(of: "-netdev").map { argv[$0 + 1] }))
        let forwards = netdev.pairs.filter { $0.key == "hostfwd" }.map(\.value)
        #expect(forwards == ["tcp:127.0.0.1:3000-:9201", "tcp:127.0.0.1:26701-:9202", "tcp:127.0.0.1:26702-:9090",
                             "tcp:127.0.0.1:26703-:9001", "tcp:127.0.0.1:9214-:9214"])
    }

    /// §5.4 #7: a comma in a path cannot inject options.
    @Test func commasInPathsAreDoubled() throws {
        var spec = try spec(.snapshot(incoming: true))
        spec.files = MachineSpec.Files(paths: EmulatorPaths(imageDirectory: "/i", runDirectory: "/r,x=1", architecture: .amd64))
        spec.hostShare = HostShare(root: "/share,readonly=off", readOnly: true)
        let argv = QEMUCommandLine(spec).arguments
        #expect(argv.contains("file=/r,,x=1/vm/disk.qcow2,format=qcow2,if=virtio"))
        #expect(argv.contains("socket,id=monitor,path=/r,,x=1/vm/monitor.sock,server=on,wait=off"))
        #expect(argv.contains("local,id=hostfs,path=/share,,readonly=off,security_model=none,readonly=on"))
        // Plain-path options take the path verbatim.
        #expect(argv.contains("file:/r,x=1/vm/serial.log"))
        #expect(argv.contains("/r,x=1/vm/qemu.pid"))
        let parsed = QEMUOptionList(parsing: "file=/r,,x=1/vm/disk.qcow2,format=qcow2")
        #expect(parsed.value("file") == "/r,x=1/vm/disk.qcow2")
        #expect(parsed.value("format") == "qcow2")
        #expect(QEMUOptionList(parsing: parsed.rendered) == parsed)
    }

    @Test func optionalPartsHaveFixedPlaces() throws {
        var spec = try spec(.snapshot(incoming: false), accelerator: .tcg)
        spec.kernelBoot = .init(kernel: "/k/vmlinux", initrd: "/k/initrd.img", commandLine: "console=ttyS0 quiet")
        spec.vmGenerationID = true
        spec.startPaused = true
        spec.hostShare = nil
        spec.firmware = "/fw/code.fd"
        spec.files.qemuLog = nil
        let argv = QEMUCommandLine(spec).arguments
        #expect(Array(argv.prefix(18)) == ["-machine", "q35", "-accel", "tcg", "-cpu", "max", "-bios", "/fw/code.fd", "-boot", "order=c",
                                           "-kernel", "/k/vmlinux", "-initrd", "/k/initrd.img", "-append", "console=ttyS0 quiet",
                                           "-m", "4096"])
        #expect(argv.contains(["-smp", "4", "-device", "vmgenid,guid=auto", "-drive"]))
        #expect(!argv.contains("-fsdev") && !argv.contains("-D"))
        #expect(argv.contains(["-S", "-serial"]))
        #expect(argv.last == "\(Self.vm)/qemu.pid")
        // Cold boot with a read-only share.
        var cold = try self.spec(.coldBoot)
        cold.hostShare = HostShare(root: "/home/dev", readOnly: true)
        #expect(QEMUCommandLine(cold).arguments.contains("local,path=/home/dev,mount_tag=hostfs,security_model=none,readonly=on"))
    }

    /// A snapshot survives changes that do not touch the guest's hardware, and only those.
    @Test func deviceLayoutFingerprintTracksGuestVisibleHardwareOnly() throws {
        let capture = DeviceLayoutFingerprint(try spec(.snapshot(incoming: false)))
        #expect(capture == DeviceLayoutFingerprint(try spec(.snapshot(incoming: true))))
        #expect(capture.digest.count == 64)

        var elsewhere = try spec(.snapshot(incoming: true), ["EMULATOR_RUN_DIR": "/tmp/other", "EMULATOR_BACKEND_PORT": "30001", "EMULATOR_HOST_SHARE": "/srv"])
        elsewhere.kernelBoot = .init(kernel: "/boot/vmlinux")
        elsewhere.startPaused = true
        #expect(DeviceLayoutFingerprint(elsewhere) == capture, "paths, forwards, share root and -kernel are not hardware")

        #expect(DeviceLayoutFingerprint(try spec(.snapshot(incoming: true), ["EMULATOR_SNAPSHOT_RAM": "2048"])) != capture)
        #expect(DeviceLayoutFingerprint(try spec(.snapshot(incoming: true), ["EMULATOR_SNAPSHOT_CPUS": "2"])) != capture)
        #expect(DeviceLayoutFingerprint(try spec(.snapshot(incoming: true), accelerator: .tcg)) != capture)
        var withGenerationID = try spec(.snapshot(incoming: true))
        withGenerationID.vmGenerationID = true
        #expect(DeviceLayoutFingerprint(withGenerationID) != capture)
        #expect(DeviceLayoutFingerprint(try spec(.coldBoot)) != capture)

        // Same devices, different order (slot assignment changes).
        var arguments = QEMUCommandLine(try spec(.snapshot(incoming: true))).arguments
        let first = try #require(arguments.firstIndex(of: "virtio-net-pci,netdev=net0"))
        let last = try #require(arguments.firstIndex(of: "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"))
        arguments.swapAt(first, last)
        let reordered = DeviceLayoutFingerprint(arguments: arguments)
        #expect(reordered != capture)
        #expect(reordered.differences(from: capture) == ["same devices in a different order"])
        let memory = DeviceLayoutFingerprint(try spec(.snapshot(incoming: true), ["EMULATOR_SNAPSHOT_RAM": "2048"]))
        #expect(memory.differences(from: capture) == ["now: -m 2048", "captured: -m 4096"])
    }
}
