import StackProcess

/// A QEMU system emulator on PATH, asked about itself (`--version`, `-accel help`).
public struct QEMUBinary: Sendable, Equatable {
    /// A name looked up in `searchPath`, or a path.
    public var executable: String
    public var searchPath: String

    public init(executable: String, searchPath: String) {
        self.executable = executable
        self.searchPath = searchPath
    }

    public init(architecture: GuestArchitecture, searchPath: String) {
        self.init(executable: architecture.qemuSystemBinary, searchPath: searchPath)
    }

    /// The environment every QEMU child gets: PATH only (nothing inherited by accident).
    public var environment: [String: String] { ["PATH": searchPath] }

    /// The executable's absolute path; a clear error when QEMU is not installed.
    public func resolvedPath() throws -> String {
        do {
            return try Command.resolve(executable, searchPath: searchPath)
        } catch {
            throw HostError(.toolFailed, "\(executable) not found in PATH (\(searchPath)); install QEMU (Debian: apt-get install qemu-system-x86 qemu-utils; macOS: brew install qemu)")
        }
    }

    /// `QEMU emulator version 7.2.22 (Debian …)` → `7.2.22`.
    public func version(timeout: Duration = .seconds(10)) async throws -> String {
        let output = try await run(["--version"], timeout: timeout)
        guard let version = QEMUBinary.parseVersion(output) else {
            throw HostError(.toolFailed, "\(executable) --version printed no version: \(output.prefix(200))")
        }
        return version
    }

    /// The accelerators `-accel help` lists (e.g. `["tcg", "kvm"]`).
    public func listedAccelerators(timeout: Duration = .seconds(10)) async throws -> [String] {
        let output = try await run(["-accel", "help"], timeout: timeout)
        return output.split(whereSeparator: \.isNewline)
            .map { String($0.trimmingSpaces) }
            .filter { !$0.isEmpty && !$0.hasSuffix(":") }
    }

    static func parseVersion(_ output: String) -> String? {
        guard let range = output.firstRange(of: "version ") else { return nil }
        let version = output[range.upperBound...].prefix(while: { $0.isNumber || $0 == "." })
        return version.isEmpty ? nil : String(version)
    }

    private func run(_ arguments: [String], timeout: Duration) async throws -> String {
        let path = try resolvedPath()
        let output = try await HostError.translating {
            // Own group: see QEMUCommandLine.command.
            try await Command(path, arguments: arguments, environment: environment, processGroup: .new).run(timeout: timeout, outputLimit: 1024 * 1024)
        }
        guard output.status.isSuccess else {
            throw HostError(.toolFailed, "\(path) \(arguments.joined(separator: " ")) failed (\(output.status)): \(output.standardErrorText.prefix(300))")
        }
        return output.standardOutputText
    }
}
