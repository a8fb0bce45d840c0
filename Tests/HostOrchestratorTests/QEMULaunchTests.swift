import StackCore
import StackProcess
import TestSupport
import Testing
@testable import HostOrchestrator
#if canImport(Glibc)
import Glibc
#endif

/// Launches the real QEMU with the command lines this module builds, in a VM directory
/// whose name contains a comma (and a space), paused (`-S`) so no guest is needed.
@Suite struct QEMULaunchTests {
    let host = HostPlatform(architecture: .amd64, os: .linux, kernelRelease: "test")
    let image = QEMUImage(searchPath: Command.defaultSearchPath)
    let launcher = QEMULauncher(searchPath: Command.defaultSearchPath)

    /// A configuration in a fresh short directory named with a comma, on free ports.
    func prepare(_ temp: TestDirectory, share: String) async throws -> EmulatorConfiguration {
        let ports = try TestSockets.freePorts(4)
        let config = try EmulatorConfiguration(environment: [
            "EMULATOR_IMAGE_DIR": temp.file("img"), "EMULATOR_RUN_DIR": temp.file("r,1 x"),
            "EMULATOR_HOST_SHARE": share, "PORT_PREFIX": TestSockets.freePrefix(),
            "EMULATOR_DASHBOARD_PORT": "\(ports[0])", "EMULATOR_BACKEND_PORT": "\(ports[1])",
            "EMULATOR_MINIO_PORT": "\(ports[2])", "EMULATOR_INBUCKET_PORT": "\(ports[3])",
            "EMULATOR_RAM": "128", "EMULATOR_SNAPSHOT_RAM": "128", "EMULATOR_CPUS": "1", "EMULATOR_SNAPSHOT_CPUS": "1",
        ], host: host, currentDirectory: "/")
        let paths = config.paths
        try paths.prepareVMDirectory()
        try FileSystem.makeDirectory(config.imageDirectory, mode: 0o755)
        try await image.create(at: paths.baseImage, sizeBytes: 64 << 20)
        try await image.createOverlay(at: paths.overlayDisk, backing: paths.baseImage)
        try PhantomDisk.ensure(at: paths.seedPhantom)
        try PhantomDisk.ensure(at: paths.bundlePhantom)
        try AtomicFile(path: paths.runtimeISO).write(try RuntimeEnvironment(ports: config.ports, vmDirectoryOnHost: paths.vmDirectory).rendered())
        return config
    }

    func launchAndInspect(_ layout: MachineSpec.Layout, share: String) async throws {
        let temp = try TestDirectory(prefix: "hp-q")
        defer { temp.remove() }
        let shareRoot = share == "temp" ? temp.path : share
        let config = try await prepare(temp, share: shareRoot)
        var spec = MachineSpec(configuration: config, host: host, accelerator: .tcg, firmware: nil, layout: layout)
        spec.startPaused = true
        let paths = config.paths
        #expect(paths.vmDirectory.contains(","))

        let process = try await launcher.launch(spec)
        defer { _ = try? process.send(SIGKILL) }
        #expect(process.isRunning)

        // The pid file verifies as this QEMU; another pid file naming the same pid does not.
        #expect(QEMUPidFile(path: paths.pidFile).lookup().process?.pid == process.pid)
        try AtomicFile(path: temp.file("other.pid")).write(Array("\(process.pid)\n".utf8))
        guard case .notRunning(.pidReused(let pid, let commandLine)) = QEMUPidFile(path: temp.file("other.pid")).lookup() else {
            Issue.record("a pid file of another VM must not match")
            return
        }
        #expect(pid == process.pid && commandLine.contains("qemu-system-x86_64"))

        // QMP answers on the socket inside the comma directory; QGA's socket exists.
        let greeting = await TestSockets.firstLine(ofUnixSocket: paths.monitorSocket)
        #expect(greeting?.contains("\"QMP\"") == true, "\(greeting ?? "no greeting")")
        #expect(FileSystem.isSocket(paths.agentSocket))
        #expect(try FileSystem.status(paths.serialLog)?.isRegularFile == true)

        // §4.19-12 / §5.5-7: every forward listens on 127.0.0.1 only.
        for forward in config.ports.forwards {
            let addresses = try TestSockets.listeningAddresses(port: forward.hostPort)
            #expect(addresses == ["0100007F"], "port \(forward.hostPort): \(addresses)")
        }
        // §4.19-7: and the port check now reports them busy.
        #expect(throws: HostError.self) { try PortAvailability.ensureFree(config.ports) }

        // stop: SIGTERM ends QEMU; the pid file then reads as not running.
        #expect(try await process.terminate(grace: .seconds(5)) == .exitedOnSIGTERM)
        #expect(!process.isRunning)
        if case .running = QEMUPidFile(path: paths.pidFile).lookup() { Issue.record("stopped QEMU still reported running") }
        #expect(try await process.terminate() == .alreadyGone)
    }

    /// §4.19-8 with a real QEMU; §5.4 #7: a VM dir with a comma works.
    @Test func coldBootCommandLineStartsQEMUInACommaDirectory() async throws {
        try await launchAndInspect(.coldBoot, share: "temp")
    }

    /// §4.19-9: the resume layout (phantoms, pcie-root-port, -fsdev, -incoming defer) is accepted by QEMU.
    @Test func resumeCommandLineStartsQEMUWaitingForIncoming() async throws {
        try await launchAndInspect(.snapshot(incoming: true), share: "temp")
    }

    /// §4.19-10: the capture layout, with the 9p share off.
    @Test func captureCommandLineStartsQEMUWithoutShare() async throws {
        try await launchAndInspect(.snapshot(incoming: false), share: "off")
    }

    /// §5.4 #40: the exported directory must exist; QEMU is not even started otherwise.
    @Test func missingShareDirectoryFailsBeforeLaunch() async throws {
        let temp = try TestDirectory(prefix: "hp-q")
        defer { temp.remove() }
        let config = try await prepare(temp, share: temp.file("no-such-dir"))
        let spec = MachineSpec(configuration: config, host: host, accelerator: .tcg, firmware: nil, layout: .coldBoot)
        await #expect(throws: HostError(.invalidConfiguration, "The host directory to share with the guest, \(temp.file("no-such-dir")), does not exist; set EMULATOR_HOST_SHARE to an existing directory, or off")) {
            _ = try await launcher.launch(spec)
        }
        #expect(!POSIX.exists(config.paths.pidFile))
    }

    /// A port taken between the check and the launch: QEMU exits and the error names it.
    @Test func busyForwardPortFailsTheLaunchWithQEMUsReason() async throws {
        // The other four forwards use free ports of the moment; a test running beside this
        // one may take one of them first, and then QEMU (rightly) names that port. Such a
        // run proves nothing either way, so it is tried again with new ports.
        for attempt in 1...3 {
            let temp = try TestDirectory(prefix: "hp-q")
            defer { temp.remove() }
            let listener = try TestSockets.bound(listening: true)
            defer { close(listener.fd) }
            var config = try await prepare(temp, share: "off")
            config.ports = try PortConfiguration(prefix: config.ports.prefix, dashboard: config.ports.dashboard, backend: listener.port,
                                                 minio: config.ports.minio, inbucket: config.ports.inbucket)
            var spec = MachineSpec(configuration: config, host: host, accelerator: .tcg, firmware: nil, layout: .coldBoot)
            spec.startPaused = true
            defer {
                if case .running = QEMUPidFile(path: config.paths.pidFile).lookup() { Issue.record("no QEMU may be left running") }
            }
            do {
                let process = try await launcher.launch(spec)
                _ = try? await process.terminate()
                Issue.record("QEMU started although port \(listener.port) is taken")
                return
            } catch let error as HostError {
                #expect(error.code == .launchFailed)
                #expect(error.message.contains("Could not set up host forwarding rule"), "\(error.message)")
                let log = try FileSystem.readText(config.paths.qemuLog) + error.message
                let diagnosis = try #require(QEMUFailure.diagnose(log))
                guard case .hostForwarding(let port, _) = diagnosis else {
                    Issue.record("not a host-forwarding failure: \(diagnosis)")
                    return
                }
                if port != listener.port && attempt < 3 { continue }
                #expect(port == listener.port, "\(diagnosis)")
                return
            }
        }
    }
}

@Suite struct QEMUPidFileTests {
    @Test func missingGarbageAndExitedPidFilesReadAsNotRunning() async throws {
        let temp = try TestDirectory(prefix: "hp-pid")
        defer { temp.remove() }
        let pidFile = QEMUPidFile(path: temp.file("qemu.pid"))
        guard case .notRunning(.noPidFile) = pidFile.lookup() else { Issue.record("missing file"); return }

        try AtomicFile(path: pidFile.path).write(Array("not a pid\n".utf8))
        guard case .notRunning(.unreadable) = pidFile.lookup() else { Issue.record("garbage"); return }

        let finished = try Command("/bin/true", environment: [:]).spawn()
        _ = try await finished.waitForExit()
        try AtomicFile(path: pidFile.path).write(Array("\(finished.pid)\n".utf8))
        guard case .notRunning(.exited(finished.pid)) = pidFile.lookup() else { Issue.record("exited pid"); return }
    }

    /// §5.4 #11: a stale pid file whose number now belongs to another program.
    @Test func reusedPidOfAnotherProgramIsNotOurs() async throws {
        let temp = try TestDirectory(prefix: "hp-pid")
        defer { temp.remove() }
        let sleeper = try Command("/bin/sleep", arguments: ["30"], environment: [:]).spawn()
        defer { sleeper.send(SIGKILL); _ = try? sleeper.exitStatusIfEnded() }
        let pidFile = QEMUPidFile(path: temp.file("qemu.pid"))
        try AtomicFile(path: pidFile.path).write(Array("\(sleeper.pid)".utf8))
        guard case .notRunning(.pidReused(let pid, let commandLine)) = pidFile.lookup() else {
            Issue.record("sleep must not pass for QEMU")
            return
        }
        #expect(pid == sleeper.pid)
        #expect(commandLine.hasPrefix("/bin/sleep 30"))
        sleeper.send(SIGKILL)
        _ = try await sleeper.waitForExit()
    }

    @Test func commandLineMatchRequiresQEMUAndThisPidFile() {
        let pidFile = QEMUPidFile(path: "/run/vm/qemu.pid")
        #expect(pidFile.isOurQEMU(["/usr/bin/qemu-system-x86_64", "-m", "1", "-pidfile", "/run/vm/qemu.pid"]))
        #expect(!pidFile.isOurQEMU(["/usr/bin/qemu-system-x86_64", "-pidfile", "/other/qemu.pid"]))
        #expect(!pidFile.isOurQEMU(["/usr/bin/python3", "-pidfile", "/run/vm/qemu.pid"]))
        #expect(!pidFile.isOurQEMU([]))
    }
}
