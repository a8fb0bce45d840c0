#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import StackCore
import StackProcess
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `qemu-img`, for the few disk operations the orchestrator needs: base images and
/// overlays (a qcow2 whose unwritten clusters come from a backing file).
public struct QEMUImage: Sendable {
    public var executable: String
    public var searchPath: String
    public var timeout: Duration

    public init(executable: String = "qemu-img", searchPath: String, timeout: Duration = .seconds(60)) {
        self.executable = executable
        self.searchPath = searchPath
        self.timeout = timeout
    }

    /// What `qemu-img info --output=json` says about one image of a chain.
    public struct Info: Sendable, Equatable, Decodable {
        public var filename: String
        public var format: String
        public var virtualSize: Int64
        public var backingFilename: String?
        public var fullBackingFilename: String?
        public var backingFilenameFormat: String?

        enum CodingKeys: String, CodingKey {
            case filename, format
            case virtualSize = "virtual-size"
            case backingFilename = "backing-filename"
            case fullBackingFilename = "full-backing-filename"
            case backingFilenameFormat = "backing-filename-format"
        }
    }

    /// Creates a standalone image (`qemu-img create -f <format> <path> <size>`).
    public func create(at path: String, format: String = "qcow2", sizeBytes: Int64) async throws {
        _ = try await run(["create", "-q", "-f", format, path, String(sizeBytes)], what: "create \(path)")
    }

    /// Creates `path` as a qcow2 overlay on the qcow2 `backing` (absolute path
    /// recorded in the header, backing format explicit so QEMU never probes it).
    /// An existing file at `path` is replaced by a new inode (§4.19-14).
    public func createOverlay(at path: String, backing: String) async throws {
        guard backing.hasPrefix("/") else {
            throw HostError(.toolFailed, "backing file \(backing) must be an absolute path (QEMU resolves relative ones against the overlay)")
        }
        try FileSystem.removeFile(path)
        _ = try await run(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", backing, path], what: "create overlay \(path)")
    }

    /// Like `createOverlay(at:backing:)`, but without opening the backing chain
    /// (`qemu-img create -u`): the session overlay of every resume is made this way,
    /// with the virtual size given. A broken backing file then shows when QEMU opens
    /// the chain ("Could not open backing file: …").
    public func createOverlay(at path: String, backing: String, virtualSize: Int64) async throws {
        guard backing.hasPrefix("/") else {
            throw HostError(.toolFailed, "backing file \(backing) must be an absolute path (QEMU resolves relative ones against the overlay)")
        }
        try FileSystem.removeFile(path)
        _ = try await run(["create", "-q", "-f", "qcow2", "-u", "-F", "qcow2", "-b", backing, path, String(virtualSize)],
                          what: "create overlay \(path)")
    }

    /// The virtual size recorded in a qcow2 header (bytes 24–31, big-endian), read
    /// directly: no process for a value needed on every resume.
    public static func qcow2VirtualSize(of path: String) throws -> Int64 {
        let header: [UInt8]
        do {
            let fd = try POSIX.open(path, O_RDONLY | O_CLOEXEC)
            defer { POSIX.close(fd) }
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 32, 0) }
            header = Array(buffer.prefix(max(0, n)))
        } catch {
            throw HostError(.malformedFile, "cannot read \(path): \(error)")
        }
        guard header.count == 32, header[0..<4] == [0x51, 0x46, 0x49, 0xFB] else {
            throw HostError(.malformedFile, "\(path) is not a qcow2 image")
        }
        return header[24..<32].reduce(Int64(0)) { $0 << 8 | Int64($1) }
    }

    /// The image and, with `backingChain`, every image below it, top first.
    public func info(_ path: String, backingChain: Bool = true) async throws -> [Info] {
        var arguments = ["info", "--output=json"]
        if backingChain { arguments.append("--backing-chain") }
        arguments.append(path)
        let output = try await run(arguments, what: "info \(path)")
        let decoder = JSONDecoder()
        do {
            if backingChain { return try decoder.decode([Info].self, from: Data(output.utf8)) }
            return [try decoder.decode(Info.self, from: Data(output.utf8))]
        } catch {
            throw HostError(.toolFailed, "qemu-img info \(path) printed JSON this version does not understand: \(error)")
        }
    }

    private func run(_ arguments: [String], what: String) async throws -> String {
        let path: String
        do {
            path = try Command.resolve(executable, searchPath: searchPath)
        } catch {
            throw HostError(.toolFailed, "\(executable) not found in PATH (\(searchPath)); install qemu-utils (Debian) or qemu (Homebrew)")
        }
        let output = try await HostError.translating {
            // Own group: see QEMUCommandLine.command.
            try await Command(path, arguments: arguments, environment: ["PATH": searchPath], processGroup: .new)
                .run(timeout: timeout, outputLimit: 16 * 1024 * 1024)
        }
        guard output.status.isSuccess else {
            let complaint = output.standardErrorText.split(whereSeparator: \.isNewline).first.map(String.init) ?? "no message"
            throw HostError(.toolFailed, "qemu-img \(what) failed (\(output.status)): \(complaint)")
        }
        return output.standardOutputText
    }
}
