import Testing
@testable import HostOrchestrator

@Suite struct EmulatorConfigurationTests {
    let linuxHost = HostPlatform(architecture: .amd64, os: .linux, kernelRelease: "6.1.0")

    func configuration(_ environment: [String: String]) throws -> EmulatorConfiguration {
        try EmulatorConfiguration(environment: ["HOME": "/home/dev"].merging(environment) { $1 }, host: linuxHost, currentDirectory: "/work")
    }

    func message(_ environment: [String: String]) -> String? {
        do {
            _ = try configuration(environment)
            return nil
        } catch let error as HostError {
            #expect(error.code == .invalidConfiguration)
            return error.message
        } catch {
            return "unexpected \(error)"
        }
    }

    /// §4.2 defaults.
    @Test func defaultsMatchTheShell() throws {
        let config = try configuration([:])
        #expect(config.imageDirectory == "/home/dev/.stack/emulator/images")
        #expect(config.runDirectory == "/home/dev/.stack/emulator/run")
        #expect(config.architecture == .amd64)
        #expect(config.coldBoot == MachineResources(memoryMiB: 4096, cpus: 4))
        #expect(config.snapshot == MachineResources(memoryMiB: 4096, cpus: 4))
        #expect(config.ports == PortConfiguration.default)
        #expect(config.ports.prefix == "81")
        #expect([config.ports.dashboard, config.ports.backend, config.ports.minio, config.ports.inbucket] == [26700, 26701, 26702, 26703])
        #expect(config.readyTimeout == .seconds(240))
        #expect(config.snapshotReadyTimeout == .seconds(45))
        #expect(!config.noSnapshot && !config.noRotation && !config.forceCapture && !config.cliWroteRuntimeISO)
        #expect(config.acceleratorOverride == nil)
        #expect(config.hostShare == HostShare(root: "/home/dev", readOnly: false))
        #expect(config.paths.vmDirectory == "/home/dev/.stack/emulator/run/vm")
    }

    @Test func emulatorHomeAndExplicitDirectoriesWin() throws {
        let viaHome = try configuration(["STACK_EMULATOR_HOME": "/srv/emu"])
        #expect(viaHome.imageDirectory == "/srv/emu/images")
        #expect(viaHome.runDirectory == "/srv/emu/run")
        let explicit = try configuration(["STACK_EMULATOR_HOME": "/srv/emu", "EMULATOR_IMAGE_DIR": "imgs/../images", "EMULATOR_RUN_DIR": "/tmp/run/"])
        #expect(explicit.imageDirectory == "/work/images")
        #expect(explicit.runDirectory == "/tmp/run")
    }

    @Test func missingHomeWithoutDirectoriesIsAnError() {
        #expect(throws: HostError.self) {
            try EmulatorConfiguration(environment: [:], host: linuxHost, currentDirectory: "/")
        }
        let config = try? EmulatorConfiguration(environment: ["EMULATOR_IMAGE_DIR": "/i", "EMULATOR_RUN_DIR": "/r"], host: linuxHost, currentDirectory: "/")
        #expect(config?.hostShare == nil)
    }

    /// §4.19-43: the CLI's message for a malformed port.
    @Test func invalidBackendPortIsRejectedWithTheCLIMessage() {
        #expect(message(["EMULATOR_BACKEND_PORT": "abc"])?.hasPrefix("Invalid EMULATOR_BACKEND_PORT: abc") == true)
        for bad in ["0", "65536", "-1", "26701 ", "0x10", "+80", "99999999999"] {
            #expect(message(["EMULATOR_DASHBOARD_PORT": bad])?.hasPrefix("Invalid EMULATOR_DASHBOARD_PORT: \(bad)") == true, "\(bad)")
        }
        #expect(message(["EMULATOR_MINIO_PORT": "1"]) == nil)
        #expect(message(["EMULATOR_INBUCKET_PORT": "65535"]) == nil)
    }

    @Test func duplicateHostPortsAreRejected() {
        #expect(message(["EMULATOR_BACKEND_PORT": "26700"])?.contains("26700") == true)
        // <P>14 collides with a host port: 8114 for the default prefix.
        #expect(message(["EMULATOR_MINIO_PORT": "8114"])?.contains("mock OAuth") == true)
    }

    /// §5.4 #43: an empty PORT_PREFIX means unset everywhere.
    @Test func portPrefixRules() throws {
        #expect(try configuration(["PORT_PREFIX": ""]).ports.prefix == "81")
        #expect(try configuration(["NEXT_PUBLIC_STACK_PORT_PREFIX": "91"]).ports.prefix == "91")
        #expect(try configuration(["PORT_PREFIX": "72", "NEXT_PUBLIC_STACK_PORT_PREFIX": "91"]).ports.prefix == "72")
        let ports = try configuration(["PORT_PREFIX": "655"]).ports
        #expect([ports.guestDashboard, ports.guestBackend, ports.mockOAuth] == [65501, 65502, 65514])
        #expect(try configuration(["PORT_PREFIX": "1"]).ports.guestDashboard == 101)
        for bad in ["656", "081", "0", "8a", "1000", " 81"] {
            #expect(message(["PORT_PREFIX": bad])?.hasPrefix("Invalid PORT_PREFIX: \(bad)") == true, "\(bad)")
        }
        #expect(message(["NEXT_PUBLIC_STACK_PORT_PREFIX": "700"])?.hasPrefix("Invalid NEXT_PUBLIC_STACK_PORT_PREFIX: 700") == true)
    }

    @Test func resourcesTimeoutsAndFlags() throws {
        let config = try configuration([
            "EMULATOR_RAM": "2048", "EMULATOR_CPUS": "2", "EMULATOR_SNAPSHOT_RAM": "1024", "EMULATOR_SNAPSHOT_CPUS": "1",
            "EMULATOR_READY_TIMEOUT": "600", "EMULATOR_SNAPSHOT_READY_TIMEOUT": "5",
            "EMULATOR_NO_SNAPSHOT": "1", "EMULATOR_NO_ROTATION": "true", "EMULATOR_FORCE_CAPTURE": "0",
            "STACK_EMULATOR_CLI_WROTE_ISO": "1", "EMULATOR_ACCEL": "tcg", "EMULATOR_ARCH": "arm64",
        ])
        #expect(config.coldBoot == MachineResources(memoryMiB: 2048, cpus: 2))
        #expect(config.snapshot == MachineResources(memoryMiB: 1024, cpus: 1))
        #expect(config.readyTimeout == .seconds(600))
        #expect(config.snapshotReadyTimeout == .seconds(5))
        #expect(config.noSnapshot && config.noRotation && !config.forceCapture && config.cliWroteRuntimeISO)
        #expect(config.acceleratorOverride == .tcg)
        #expect(config.architecture == .arm64)
        #expect(config.paths.baseImage == "/home/dev/.stack/emulator/images/stack-emulator-arm64.qcow2")

        #expect(message(["EMULATOR_RAM": "4G"])?.hasPrefix("Invalid EMULATOR_RAM: 4G") == true)
        #expect(message(["EMULATOR_CPUS": "0"])?.hasPrefix("Invalid EMULATOR_CPUS: 0") == true)
        #expect(message(["EMULATOR_READY_TIMEOUT": "1.5"])?.hasPrefix("Invalid EMULATOR_READY_TIMEOUT: 1.5") == true)
        #expect(message(["EMULATOR_NO_SNAPSHOT": "maybe"])?.hasPrefix("Invalid EMULATOR_NO_SNAPSHOT: maybe") == true)
        #expect(message(["EMULATOR_ACCEL": "xen"])?.hasPrefix("Invalid EMULATOR_ACCEL: xen") == true)
        #expect(message(["EMULATOR_ARCH": "riscv64"])?.hasPrefix("Invalid EMULATOR_ARCH: riscv64") == true)
        #expect(try configuration(["EMULATOR_ARCH": "x86_64"]).architecture == .amd64)
    }

    /// §5.4 #40: the exported tree is configurable; default is HOME, `/` restores upstream.
    @Test func hostShareIsConfigurable() throws {
        #expect(try configuration(["EMULATOR_HOST_SHARE": "off"]).hostShare == nil)
        let root = try #require(try configuration(["EMULATOR_HOST_SHARE": "/"]).hostShare)
        #expect(root.root == "/" && root.guestMountPoint == "/host")
        let projects = try #require(try configuration(["EMULATOR_HOST_SHARE": "/srv/projects/", "EMULATOR_HOST_SHARE_READONLY": "1"]).hostShare)
        #expect(projects == HostShare(root: "/srv/projects", readOnly: true))
        #expect(projects.guestMountPoint == "/host/srv/projects")
        #expect(message(["EMULATOR_HOST_SHARE": "relative/dir"])?.hasPrefix("Invalid EMULATOR_HOST_SHARE: relative/dir") == true)
    }

    @Test func overlongSocketPathsAreRejectedUpFront() {
        let long = "/tmp/" + String(repeating: "d", count: 100)
        #expect(message(["EMULATOR_RUN_DIR": long])?.contains("longer than") == true)
    }

    /// §4.19-2.
    @Test func unsupportedHostArchitectureFails() throws {
        #expect(throws: HostError.self) { try HostPlatform(unameMachine: "mips64", unameSystem: "Linux", kernelRelease: "x") }
        do {
            _ = try HostPlatform(unameMachine: "riscv64", unameSystem: "Linux", kernelRelease: "x")
        } catch let error as HostError {
            #expect(error.message.hasPrefix("Unsupported host architecture: riscv64"))
            #expect(error.code == .unsupportedHost)
        } catch { Issue.record("unexpected \(error)") }
        #expect(try HostPlatform(unameMachine: "aarch64", unameSystem: "Darwin", kernelRelease: "x") == HostPlatform(architecture: .arm64, os: .darwin, kernelRelease: "x"))
        #expect(HostOS(unameSystem: "MINGW64_NT-10.0") == .windows)
        #expect(HostOS(unameSystem: "FreeBSD") == .unknown)
    }

    @Test func detectsThisHost() throws {
        let host = try HostPlatform.detect()
        #expect(host.os == .linux)
        #expect(!host.kernelRelease.isEmpty)
    }
}
