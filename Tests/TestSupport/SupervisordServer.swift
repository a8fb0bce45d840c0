import CSystem
import StackCore
import StackProcess
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One `[program:x]` section for a test supervisord.
public struct SupervisordProgram: Sendable {
    public var name: String
    /// The command line supervisord runs (it splits it shell-like). Empty when `script` is set.
    public var command: String
    /// A `/bin/sh` script, written to a file next to the configuration, so tests need
    /// not quote a command line.
    public var script: String?
    public var environment: [String: String]
    public var autostart: Bool
    /// `true`, `false` or `unexpected`.
    public var autorestart: String
    public var startSeconds: Int
    public var startRetries: Int
    public var stopWaitSeconds: Int
    public var stopAsGroup: Bool
    public var killAsGroup: Bool

    public init(name: String, command: String = "", script: String? = nil, environment: [String: String] = [:],
                autostart: Bool = true, autorestart: String = "true", startSeconds: Int = 0, startRetries: Int = 3,
                stopWaitSeconds: Int = 3, stopAsGroup: Bool = false, killAsGroup: Bool = false) {
        precondition(command.isEmpty != (script == nil), "give either a command or a script")
        self.name = name
        self.command = command
        self.script = script
        self.environment = environment
        self.autostart = autostart
        self.autorestart = autorestart
        self.startSeconds = startSeconds
        self.startRetries = startRetries
        self.stopWaitSeconds = stopWaitSeconds
        self.stopAsGroup = stopAsGroup
        self.killAsGroup = killAsGroup
    }
}

/// A real `/usr/bin/supervisord -n` with a private (0700) directory holding its
/// configuration, control socket, pid file and logs.
///
/// Every process it starts inherits a unique marker variable, so `stop()` can find and
/// kill whatever survives supervisord (a program's background child, or everything when
/// supervisord itself had to be SIGKILLed): no orphans outlive a test.
public final class SupervisordServer: Sendable {
    public let directory: String
    public let socketPath: String
    public let configurationPath: String
    public let logPath: String
    private let process: ChildProcess
    private let tether: TestLifeline.Tether
    private let marker: String
    private struct Lifecycle {
        /// `stop()` ran (or is running).
        var stopped = false
        /// supervisord's pid was already reaped (it exited on its own during start).
        var reaped = false
    }
    private let lifecycle = Mutex(Lifecycle())

    private init(directory: String, process: ChildProcess, tether: TestLifeline.Tether, marker: String) {
        self.tether = tether
        self.directory = directory
        self.socketPath = Path.join(directory, "s.sock")
        self.configurationPath = Path.join(directory, "supervisord.conf")
        self.logPath = Path.join(directory, "supervisord.log")
        self.process = process
        self.marker = marker
    }

    /// Runs `body` with a started supervisord and stops it afterwards, also when `body` throws.
    public static func with<R: Sendable>(programs: [SupervisordProgram], _ body: (SupervisordServer) async throws -> R) async throws -> R {
        let server = try await start(programs: programs)
        do {
            let result = try await body(server)
            await server.stop()
            return result
        } catch {
            await server.stop()
            throw error
        }
    }

    /// Writes the configuration, starts supervisord and returns once its socket accepts
    /// connections (or throws with its log when it exits or does not get there in time).
    public static func start(programs: [SupervisordProgram], readyTimeout: Duration = .seconds(20)) async throws -> SupervisordServer {
        // A short private directory: sun_path holds 107 bytes and $TMPDIR may be long.
        var template = Array("/tmp/svd-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw StackError.systemCall("mkdtemp /tmp/svd-XXXXXX", errno: errno)
        }
        let directory = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
        guard chmod(directory, 0o700) == 0 else { throw StackError.systemCall("chmod \(directory)", errno: errno) }

        let marker = "\(Path.lastComponent(of: directory))-\(getpid())"
        let configuration = try render(programs: programs, directory: directory)
        for program in programs {
            if let script = program.script {
                try AtomicFile(path: Path.join(directory, "\(program.name).sh"), mode: 0o700).write(Array(script.utf8))
            }
        }
        try AtomicFile(path: Path.join(directory, "supervisord.conf"), mode: 0o600).write(Array(configuration.utf8))

        let output = try POSIX.open(Path.join(directory, "supervisord.out"), O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        defer { POSIX.close(output) }
        let child = try Command(
            "/usr/bin/supervisord", arguments: ["-n", "-c", Path.join(directory, "supervisord.conf")],
            environment: ["PATH": Command.defaultSearchPath, "HOME": directory, markerVariable: marker],
            workingDirectory: directory, processGroup: .newSession,
            standardInput: .discard, standardOutput: .fileDescriptor(output), standardError: .fileDescriptor(output)
        ).spawn()
        let server = SupervisordServer(directory: directory, process: child, tether: TestLifeline.tether(processGroup: child.pid, graceSeconds: 5), marker: marker)
        do {
            try await server.waitUntilSocketAccepts(deadline: .now + readyTimeout)
        } catch {
            await server.stop(keepDirectory: true)
            let log = server.diagnostics()
            SupervisordServer.removeTree(directory)
            throw StackError(.systemCall, "supervisord did not become ready: \(error)\n\(log)")
        }
        return server
    }

    /// SIGTERM to supervisord (which stops its programs), SIGKILL after `grace`; then
    /// SIGKILL for any process still carrying this instance's marker; then removes the
    /// directory. Idempotent.
    public func stop(grace: Duration = .seconds(15)) async {
        await stop(keepDirectory: false, grace: grace)
    }

    private func stop(keepDirectory: Bool, grace: Duration = .seconds(15)) async {
        let (alreadyStopped, reaped) = lifecycle.withLock { state in
            defer { state.stopped = true }
            return (state.stopped, state.reaped)
        }
        if alreadyStopped { return }
        if !reaped {
            process.send(SIGTERM)
            let process = self.process
            await withTaskGroup(of: Bool.self) { group in
                group.addTask { _ = try? await process.waitForExit(); return true }
                group.addTask { try? await Task.sleep(for: grace); return false }
                let exitedInTime = await group.next()!
                if exitedInTime { group.cancelAll() } else { process.send(SIGKILL) }
                await group.waitForAll()
            }
        }
        await sweepMarkedProcesses()
        tether.release()
        if !keepDirectory { SupervisordServer.removeTree(directory) }
    }

    /// Pids of live processes started under this supervisord (including itself while it runs).
    public func markedProcesses() -> [pid_t] {
        SupervisordServer.processes(withEnvironmentEntry: Array("\(SupervisordServer.markerVariable)=\(marker)".utf8))
    }

    /// supervisord's own log and its stdout/stderr, for failure messages.
    public func diagnostics() -> String {
        let log = (try? POSIX.readFile(logPath, limit: 1 << 20)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let out = (try? POSIX.readFile(Path.join(directory, "supervisord.out"), limit: 1 << 20)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        return "--- supervisord.log\n\(log)--- supervisord stdout/stderr\n\(out)"
    }

    // MARK: internals

    private static func removeTree(_ path: String) {
        let command = Command("/bin/rm", arguments: ["-rf", path], environment: ["PATH": Command.defaultSearchPath])
        if let child = try? command.spawn() {
            var status: Int32 = 0
            while waitpid(child.pid, &status, 0) < 0 && errno == EINTR {}
        }
    }

    static let markerVariable = "STACK_TEST_SUPERVISORD_INSTANCE"

    private func waitUntilSocketAccepts(deadline: ContinuousClock.Instant) async throws {
        var delay = Duration.milliseconds(10)
        while true {
            if let status = try process.exitStatusIfEnded() {
                lifecycle.withLock { $0.reaped = true }
                throw StackError(.systemCall, "supervisord exited (\(status)) before its socket \(socketPath) accepted connections")
            }
            if SupervisordServer.socketAccepts(socketPath) { return }
            guard ContinuousClock.now + delay < deadline else {
                throw StackError(.systemCall, "supervisord's socket \(socketPath) accepted no connection before the deadline")
            }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .milliseconds(200))
        }
    }

    private static func socketAccepts(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        } == 0
    }

    /// SIGKILLs every process carrying the marker until none is left (bounded).
    private func sweepMarkedProcesses() async {
        var delay = Duration.milliseconds(10)
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            let survivors = markedProcesses()
            if survivors.isEmpty || ContinuousClock.now > deadline { return }
            for pid in survivors { kill(pid, SIGKILL) }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .milliseconds(200))
        }
    }

    /// Live processes whose environment holds `entry` (`NAME=value`). Zombies have no
    /// environment left, so they do not count.
    static func processes(withEnvironmentEntry entry: [UInt8]) -> [pid_t] {
        guard let proc = opendir("/proc") else { return [] }
        defer { closedir(proc) }
        var found: [pid_t] = []
        while let item = readdir(proc) {
            let name = withUnsafeBytes(of: item.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard let pid = pid_t(name), pid != getpid() else { continue }
            guard let environment = try? POSIX.readFile("/proc/\(pid)/environ", limit: 1 << 20) else { continue }
            if environment.split(separator: 0).contains(where: { $0.elementsEqual(entry) }) {
                found.append(pid)
            }
        }
        return found
    }

    static func render(programs: [SupervisordProgram], directory: String) throws -> String {
        func value(_ text: String) throws -> String {
            // ConfigParser interpolates `%`; a newline would end the value.
            guard !text.contains("\n"), !text.contains("\r") else {
                throw StackError(.invalidConfiguration, "supervisord configuration value contains a newline: \(text)")
            }
            return text.replacingAll("%", with: "%%")
        }
        var lines = [
            "[unix_http_server]",
            "file=\(try value(Path.join(directory, "s.sock")))",
            "chmod=0700",
            "",
            "[supervisord]",
            "nodaemon=true",
            "logfile=\(try value(Path.join(directory, "supervisord.log")))",
            "pidfile=\(try value(Path.join(directory, "supervisord.pid")))",
            "childlogdir=\(try value(directory))",
            "loglevel=debug",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
        ]
        for program in programs {
            guard !program.name.isEmpty, program.name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                throw StackError(.invalidConfiguration, "program name \"\(program.name)\" must be letters, digits, - and _")
            }
            let command = program.script == nil ? program.command : "/bin/sh \(Path.join(directory, "\(program.name).sh"))"
            lines += [
                "[program:\(program.name)]",
                "command=\(try value(command))",
                "directory=\(try value(directory))",
                "autostart=\(program.autostart)",
                "autorestart=\(program.autorestart)",
                "startsecs=\(program.startSeconds)",
                "startretries=\(program.startRetries)",
                "stopwaitsecs=\(program.stopWaitSeconds)",
                "stopasgroup=\(program.stopAsGroup)",
                "killasgroup=\(program.killAsGroup)",
                "stdout_logfile=\(try value(Path.join(directory, "\(program.name).out.log")))",
                "stderr_logfile=\(try value(Path.join(directory, "\(program.name).err.log")))",
            ]
            if !program.environment.isEmpty {
                let pairs = try program.environment.keys.sorted().map { key in
                    let text = program.environment[key]!
                    guard !text.contains("\""), !text.contains("\\") else {
                        throw StackError(.invalidConfiguration, "environment value for \(key) must not contain \" or \\ in a test supervisord")
                    }
                    return "\(key)=\"\(try value(text))\""
                }
                lines.append("environment=\(pairs.joined(separator: ","))")
            }
            lines.append("")
        }
        return lines.joined(separator: "\n")
    }
}

private extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var result = ""
        for character in self {
            if character == target { result += replacement } else { result.append(character) }
        }
        return result
    }
}
