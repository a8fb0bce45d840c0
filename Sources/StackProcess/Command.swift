import CSystem
import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What to run and how: the executable, its arguments, its *complete* environment,
/// working directory, process group and standard streams. Nothing is inherited
/// implicitly except what the caller puts here, so a child never sees a variable by
/// accident, and secrets travel only in `environment` or on stdin, never in argv.
public struct Command: Sendable {
    public enum ProcessGroup: Sendable {
        /// Stay in the parent's process group.
        case inherit
        /// Lead a new process group (its id is the child's pid), so the whole tree it
        /// starts can be signalled at once.
        case new
        /// Lead a new session (and group): detaches from the controlling terminal.
        case newSession
    }

    public enum Stream: Sendable {
        case inherit
        /// /dev/null.
        case discard
        /// An open descriptor of the caller (duplicated onto 0/1/2 in the child).
        case fileDescriptor(Int32)
    }

    public var executable: String
    public var arguments: [String]
    public var environment: [String: String]
    public var workingDirectory: String?
    public var processGroup: ProcessGroup
    public var standardInput: Stream
    public var standardOutput: Stream
    public var standardError: Stream

    public init(
        _ executable: String,
        arguments: [String] = [],
        environment: [String: String],
        workingDirectory: String? = nil,
        processGroup: ProcessGroup = .inherit,
        standardInput: Stream = .inherit,
        standardOutput: Stream = .inherit,
        standardError: Stream = .inherit
    ) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.processGroup = processGroup
        self.standardInput = standardInput
        self.standardOutput = standardOutput
        self.standardError = standardError
    }

    public static let defaultSearchPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// The executable's path: as given when it contains a `/`, else the first match in
    /// the `PATH` of the child's environment (or a standard path when it has none).
    public func resolvedExecutable() throws -> String {
        try Command.resolve(executable, searchPath: environment["PATH"] ?? Command.defaultSearchPath)
    }

    public static func resolve(_ name: String, searchPath: String) throws -> String {
        if name.contains("/") { return name }
        for directory in searchPath.split(separator: ":", omittingEmptySubsequences: true) {
            let candidate = Path.join(String(directory), name)
            if access(candidate, X_OK) == 0 {
                var st = stat()
                if stat(candidate, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG { return candidate }
            }
        }
        throw ProcessError(.executableNotFound, "\(name): not found in PATH (\(searchPath))")
    }

    /// Starts the process. The caller owns waiting for it (see `ChildProcess`).
    public func spawn() throws -> ChildProcess {
        let path = try resolvedExecutable()
        var nullFD: Int32 = -1
        defer { if nullFD >= 0 { close(nullFD) } }
        func descriptor(_ stream: Stream, writable: Bool) throws -> Int32 {
            switch stream {
            case .inherit: return -1
            case .fileDescriptor(let fd): return fd
            case .discard:
                if nullFD < 0 { nullFD = try POSIX.open("/dev/null", O_RDWR) }
                return nullFD
            }
        }
        let stdinFD = try descriptor(standardInput, writable: false)
        let stdoutFD = try descriptor(standardOutput, writable: true)
        let stderrFD = try descriptor(standardError, writable: true)

        let argv = [Path.lastComponent(of: path) == Path.lastComponent(of: executable) ? executable : path] + arguments
        let envp = environment.keys.sorted().map { "\($0)=\(environment[$0]!)" }
        let pid = CStringArray.with(argv) { argvPointer in
            CStringArray.with(envp) { envpPointer in
                withOptionalCString(workingDirectory) { cwd in
                    path.withCString { pathPointer in
                        var options = cs_spawn_options(
                            path: pathPointer, argv: argvPointer, envp: envpPointer, cwd: cwd,
                            new_process_group: processGroup == .new, new_session: processGroup == .newSession,
                            stdin_fd: stdinFD, stdout_fd: stdoutFD, stderr_fd: stderrFD)
                        return cs_spawn(&options)
                    }
                }
            }
        }
        if pid < 0 {
            throw ProcessError(.spawnFailed, "cannot start \(path)", errno: -pid)
        }
        return ChildProcess(pid: pid, executable: path, leadsGroup: processGroup != .inherit)
    }
}

extension Command.ProcessGroup: Equatable {}

private func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) throws -> R) rethrows -> R {
    guard let string else { return try body(nil) }
    return try string.withCString { try body($0) }
}

/// A NULL-terminated `char *const *` built from Swift strings for the duration of a call.
enum CStringArray {
    static func with<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) throws -> R) rethrows -> R {
        let pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) } + [nil]
        defer { for pointer in pointers { free(pointer) } }
        return try pointers.withUnsafeBufferPointer { try body($0.baseAddress!) }
    }
}
