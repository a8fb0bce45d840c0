import ISO9660
import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The STACKCFG disk (§4.5): `runtime.env` (ports, prefix, the host VM directory) and
/// `base.env`, written natively (no mkisofs/genisoimage/hdiutil, §5.4 #42).
///
/// `start` keeps an ISO the CLI just wrote (`STACK_EMULATOR_CLI_WROTE_ISO=1`) and
/// otherwise writes one naming VM_DIR; `capture` always writes one with an empty
/// `STACK_EMULATOR_VM_DIR_HOST` (a snapshot must not carry one host's path, §4.19-37).
/// `base.env` comes from `EMULATOR_BASE_ENV` (default IMAGE_DIR/base.env) or, when that
/// file does not exist, from the disk being replaced (what the CLI wrote).
struct RuntimeDisk: Sendable {
    let configuration: EmulatorConfiguration

    enum Purpose {
        case start
        case capture
    }

    /// Writes the ISO unless `purpose` is `.start` and the CLI already wrote a non-empty one.
    /// Returns false when an existing ISO was kept.
    @discardableResult
    func ensure(for purpose: Purpose) throws -> Bool {
        let paths = configuration.paths
        if purpose == .start, configuration.cliWroteRuntimeISO,
           let status = try FileSystem.status(paths.runtimeISO, followLinks: true), status.size > 0 {
            return false
        }
        let environment = purpose == .capture
            ? RuntimeEnvironment.forCapture(ports: configuration.ports)
            : RuntimeEnvironment(ports: configuration.ports, vmDirectoryOnHost: paths.vmDirectory)
        try write(environment, to: paths.runtimeISO)
        return true
    }

    /// `base.env`: the configured file, else the one in the STACKCFG disk already at
    /// `path` (the CLI writes the disk before it runs `capture`).
    func baseEnvironment(existingDisk path: String) throws -> [UInt8] {
        do {
            return try POSIX.readFile(configuration.baseEnvironmentFile, limit: 16 * 1024 * 1024)
        } catch let error as StackError where error.errno == ENOENT {
            if let packed = RuntimeDiskContents.file(named: "base.env", in: path) { return packed }
            throw HostError(.invalidConfiguration, "Emulator base.env not found at \(configuration.baseEnvironmentFile) (nor in an existing \(path)); set EMULATOR_BASE_ENV to the stack's generated .env.development (pnpm run emulator:generate-env)")
        } catch {
            throw HostError(.invalidConfiguration, "Cannot read the emulator base.env \(configuration.baseEnvironmentFile): \(error)")
        }
    }

    func write(_ environment: RuntimeEnvironment, to path: String) throws {
        let baseEnvironment = try baseEnvironment(existingDisk: path)
        let image = ISO9660Image(files: [
            ISO9660File(name: "runtime.env", contents: try environment.rendered()),
            ISO9660File(name: "base.env", contents: baseEnvironment),
        ], recordingDate: try RuntimeDisk.now())
        // Rewritten at every start: a rename keeps a reader from seeing half an image,
        // and no fsync is needed (a crash only means it is written again).
        let temporary = path + ".tmp-\(RandomToken.hex(bytes: 4))"
        do {
            let fd = try POSIX.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode: 0o644)
            defer { POSIX.close(fd) }
            try image.write { chunk in try POSIX.writeAll(fd, chunk, context: "write \(temporary)") }
        } catch let error as HostError {
            try? FileSystem.removeFile(temporary)
            throw error
        } catch {
            try? FileSystem.removeFile(temporary)
            throw HostError(.systemCall, "cannot write the runtime disk \(path): \(error)")
        }
        try FileSystem.rename(temporary, path)
    }

    static func now() throws -> ISO9660Timestamp {
        do {
            return try ISO9660Timestamp(unixSeconds: Int64(time(nil)))
        } catch {
            throw HostError(.systemCall, "cannot represent the current time in ISO 9660: \(error)")
        }
    }
}
