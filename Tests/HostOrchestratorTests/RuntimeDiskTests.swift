import StackCore
import StackProcess
import TestSupport
import Testing
@testable import HostOrchestrator

/// The STACKCFG disk as the emulator writes it (§4.5), read back with isoinfo.
@Suite struct RuntimeDiskTests {
    let host = HostPlatform(architecture: .amd64, os: .linux, kernelRelease: "test")

    func configuration(_ temp: TestDirectory, _ extra: [String: String] = [:]) throws -> EmulatorConfiguration {
        let config = try EmulatorConfiguration(environment: ["STACK_EMULATOR_HOME": temp.path, "EMULATOR_HOST_SHARE": "off"].merging(extra) { $1 },
                                               host: host, currentDirectory: "/")
        try config.paths.prepareVMDirectory()
        try POSIX.makeDirectories(config.imageDirectory)
        return config
    }

    func extract(_ file: String, from iso: String) async throws -> String {
        try await TestShell.run("isoinfo -i \"$0\" -J -x \"/$1\"", environment: nil, timeout: .seconds(20), arguments: [iso, file])
    }

    /// §4.19-41: runtime.env (six lines, VM_DIR) and base.env byte-identical, Joliet names.
    @Test func startDiskCarriesRuntimeEnvAndBaseEnv() async throws {
        let temp = try TestDirectory(prefix: "hp-iso")
        defer { temp.remove() }
        let config = try configuration(temp)
        let base = "A=1\nB=two words\n"
        try AtomicFile(path: config.baseEnvironmentFile).write(Array(base.utf8))
        #expect(try RuntimeDisk(configuration: config).ensure(for: .start))
        let iso = config.paths.runtimeISO
        #expect(try await extract("base.env", from: iso) == base)
        let runtime = try await extract("runtime.env", from: iso)
        #expect(runtime.split(separator: "\n").count == 6)
        #expect(runtime.hasSuffix("STACK_EMULATOR_VM_DIR_HOST=\(config.paths.vmDirectory)\n"))
        #expect(RuntimeDiskContents.file(named: "base.env", in: iso) == Array(base.utf8))
        #expect(RuntimeDiskContents.file(named: "missing.env", in: iso) == nil)
    }

    /// §4.5: with STACK_EMULATOR_CLI_WROTE_ISO=1 start keeps the CLI's disk; capture
    /// replaces it (empty VM_DIR_HOST, §4.19-37) but keeps the CLI's base.env when no
    /// base.env file is configured (§5.4 #42).
    @Test func captureKeepsTheCLIsBaseEnvAndStartKeepsTheCLIsDisk() async throws {
        let temp = try TestDirectory(prefix: "hp-iso")
        defer { temp.remove() }
        let config = try configuration(temp, ["STACK_EMULATOR_CLI_WROTE_ISO": "1"])
        let base = "FROM_THE_CLI=1\n"
        try AtomicFile(path: config.baseEnvironmentFile).write(Array(base.utf8))
        try RuntimeDisk(configuration: config).write(RuntimeEnvironment(ports: config.ports, vmDirectoryOnHost: "/cli/vm"), to: config.paths.runtimeISO)
        try FileSystem.removeFile(config.baseEnvironmentFile)

        #expect(try RuntimeDisk(configuration: config).ensure(for: .start) == false)
        #expect(try await extract("runtime.env", from: config.paths.runtimeISO).contains("STACK_EMULATOR_VM_DIR_HOST=/cli/vm\n"))

        #expect(try RuntimeDisk(configuration: config).ensure(for: .capture))
        #expect(try await extract("runtime.env", from: config.paths.runtimeISO).hasSuffix("STACK_EMULATOR_VM_DIR_HOST=\n"))
        #expect(try await extract("base.env", from: config.paths.runtimeISO) == base)
    }

    @Test func missingBaseEnvEverywhereNamesTheVariable() throws {
        let temp = try TestDirectory(prefix: "hp-iso")
        defer { temp.remove() }
        let config = try configuration(temp)
        #expect {
            try RuntimeDisk(configuration: config).ensure(for: .capture)
        } throws: { error in
            (error as? HostError)?.message.contains("Emulator base.env not found at \(config.baseEnvironmentFile)") == true
                && (error as? HostError)?.message.contains("EMULATOR_BASE_ENV") == true
        }
        #expect(!POSIX.exists(config.paths.runtimeISO))
    }
}
