import CSystem
import StackCore
import StackProcess
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real PostgreSQL 15 server for tests: its own data directory under a short /tmp dir,
/// a unix socket only (`listen_addresses=''`), durability off for speed.
///
/// - Run as root (CI), initdb and postgres run as `nobody` (PostgreSQL refuses root).
/// - Owners: `PostgresServer.testDatabase()` gives a fresh database on one server shared
///   by the whole test process; `PostgresServer.create()` / `withServer` give a private
///   server that a test starts and stops itself ("server down", "server comes up late").
/// - Nothing outlives the test process, even when it is killed: two tiny `sh` helpers
///   each read a pipe (a "lifeline") whose write end only this process holds, and act
///   when it closes (`stop()`/`remove()`, or the kernel closing it when the process
///   exits or dies):
///   - the keeper (one per `start()`) runs postgres in the background and fast-shuts it
///     down (SIGINT); if the keeper itself is killed, postgres gets SIGINT through
///     `setpriv --pdeathsig`;
///   - the janitor (one per server, from `create()` to `remove()`) waits for postgres to
///     be gone and deletes the directory.
public actor PostgresServer {
    public static let binDirectory = "/usr/lib/postgresql/15/bin"
    /// The superuser initdb creates; local connections as it need no password.
    public static let superuser = "postgres"

    public nonisolated let baseDirectory: String
    public nonisolated let dataDirectory: String
    public nonisolated let socketDirectory: String
    public nonisolated let logFile: String

    private let owner: (uid: uid_t, gid: gid_t)?
    private var keeper: ChildProcess?
    private var keeperLifeline: Int32 = -1
    private var janitor: ChildProcess?
    private var janitorLifeline: Int32 = -1
    private var removed = false

    private init(baseDirectory: String, owner: (uid: uid_t, gid: gid_t)?) {
        self.baseDirectory = baseDirectory
        self.dataDirectory = Path.join(baseDirectory, "data")
        self.socketDirectory = Path.join(baseDirectory, "s")
        self.logFile = Path.join(baseDirectory, "postgres.log")
        self.owner = owner
    }

    // MARK: - Private servers

    /// A new, initialised but not started server (initdb done; `pg_hba.conf` allows the
    /// superuser without a password and everyone else with scram-sha-256).
    public static func create() async throws -> PostgresServer {
        let owner = try serviceAccount()
        var template = Array("/tmp/pg-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw StackError.systemCall("mkdtemp /tmp/pg-XXXXXX", errno: errno)
        }
        let base = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let server = PostgresServer(baseDirectory: base, owner: owner)
        do {
            try await server.startJanitor()
            try await server.initialise()
        } catch {
            await server.remove()
            throw error
        }
        return server
    }

    /// A started private server for the duration of `body`, removed afterwards (also
    /// when `body` throws). `started: false` leaves starting to the test.
    public static func withServer<T: Sendable>(
        started: Bool = true,
        _ body: (PostgresServer) async throws -> T
    ) async throws -> T {
        let server = try await create()
        do {
            if started { try await server.start() }
            let value = try await body(server)
            await server.remove()
            return value
        } catch {
            await server.remove()
            throw error
        }
    }

    // MARK: - Connection strings and psql

    /// The unix-socket URI form: `postgresql://user[:password]@/database?host=<socket dir>`.
    public nonisolated func connectionString(database: String = "postgres", user: String = PostgresServer.superuser, password: String? = nil) -> String {
        let credentials = password.map { "\(user):\($0)" } ?? user
        return "postgresql://\(credentials)@/\(database)?host=\(socketDirectory)"
    }

    /// The `key=value` form of the same connection.
    public nonisolated func keyValueConnectionString(database: String = "postgres", user: String = PostgresServer.superuser, password: String? = nil) -> String {
        var text = "host=\(socketDirectory) dbname=\(database) user=\(user)"
        if let password { text += " password='\(password)'" }
        return text
    }

    /// Runs `sql` (one or more statements, fed on stdin) with psql as the superuser and
    /// returns its unaligned, tuples-only output without the final newline. Throws on any
    /// SQL error (ON_ERROR_STOP). For test set-up and assertions only.
    @discardableResult
    public nonisolated func psql(_ sql: String, database: String = "postgres") async throws -> String {
        let command = Command(
            Path.join(PostgresServer.binDirectory, "psql"),
            arguments: ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", socketDirectory,
                        "-U", PostgresServer.superuser, "-d", database, "-f", "-"],
            environment: ["PATH": Command.defaultSearchPath, "LC_ALL": "C", "PGCONNECT_TIMEOUT": "10"])
        let output = try await command.run(input: Array(sql.utf8), timeout: .seconds(60))
        guard output.status.isSuccess else {
            throw StackError(.systemCall, "psql on \(database) failed (\(output.status)): \(output.standardErrorText)")
        }
        var text = output.standardOutputText
        if text.hasSuffix("\n") { text.removeLast() }
        return text
    }

    // MARK: - Lifecycle

    public var isRunning: Bool { keeper != nil }

    /// Starts postgres and returns once it accepts connections (`postmaster.pid` says
    /// "ready"); throws with the end of the server log if it exits or is not ready in 60 s.
    public func start() async throws {
        precondition(!removed, "PostgresServer.start after remove")
        guard keeper == nil else { return }
        // A postgres killed by the last-resort SIGKILL leaves its pid file saying "ready";
        // none of ours runs now, so it is stale and must not pass for the new server's.
        unlink(Path.join(dataDirectory, "postmaster.pid"))
        let (child, lifeline) = try PostgresServer.spawnWithLifeline(
            script: PostgresServer.keeperScript, name: "postgres-keeper", arguments: [logFile] + postgresCommand(),
            workingDirectory: baseDirectory)
        keeper = child
        keeperLifeline = lifeline
        do {
            try await waitUntilReady(child)
        } catch {
            await shutDown()
            throw error
        }
    }

    /// Fast shutdown; the data directory stays, so `start()` brings the same cluster back.
    public func stop() async {
        await shutDown()
    }

    /// Stops the server if it runs and deletes its directory.
    public func remove() async {
        guard !removed else { return }
        removed = true
        await shutDown()
        if let janitor {
            self.janitor = nil
            close(janitorLifeline)
            janitorLifeline = -1
            await PostgresServer.wait(for: janitor, upTo: .seconds(60))
        }
        // Normally the janitor has done it; this covers a janitor that could not start.
        _ = try? await Command("/bin/rm", arguments: ["-rf", baseDirectory], environment: [:]).run(timeout: .seconds(60))
    }

    // MARK: - Internals

    /// The keeper (see the type's comment): $1 is the log file, the rest the postgres
    /// command. Background jobs of a non-interactive shell ignore SIGINT, but postgres
    /// installs its own handlers, so `kill -INT` still means fast shutdown.
    static let keeperScript = #"""
    log=$1; shift
    exec 3<&0 </dev/null
    "$@" 3<&- >>"$log" 2>&1 &
    pg=$!
    ( read -r _ <&3; kill -INT "$pg" 2>/dev/null ) &
    reader=$!
    exec 3<&-
    wait "$pg"
    status=$?
    kill "$reader" 2>/dev/null
    exit "$status"
    """#

    /// The janitor (see the type's comment): $1 is the base directory. postgres removes
    /// postmaster.pid when it has shut down; a crashed one leaves it, hence the bound.
    static let janitorScript = #"""
    dir=$1
    read -r _
    i=0
    while [ -e "$dir/data/postmaster.pid" ] && [ "$i" -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    rm -rf "$dir"
    """#

    /// Starts `/bin/sh -c script name arguments…` in its own process group with stdin
    /// the read end of a new pipe; returns the child and the write end (close-on-exec,
    /// so no other child inherits it and only this process keeps it open).
    private static func spawnWithLifeline(script: String, name: String, arguments: [String], workingDirectory: String) throws -> (ChildProcess, Int32) {
        var fds: [Int32] = [-1, -1]
        let rc = fds.withUnsafeMutableBufferPointer { cs_pipe($0.baseAddress!) }
        guard rc == 0 else { throw StackError.systemCall("pipe", errno: -rc) }
        defer { close(fds[0]) }
        do {
            let child = try Command(
                "/bin/sh", arguments: ["-c", script, name] + arguments,
                environment: ["PATH": Command.defaultSearchPath, "LC_ALL": "C"],
                workingDirectory: workingDirectory, processGroup: .new,
                standardInput: .fileDescriptor(fds[0]), standardOutput: .discard, standardError: .discard
            ).spawn()
            return (child, fds[1])
        } catch {
            close(fds[1])
            throw error
        }
    }

    private func startJanitor() throws {
        let (child, lifeline) = try PostgresServer.spawnWithLifeline(
            script: PostgresServer.janitorScript, name: "postgres-janitor", arguments: [baseDirectory], workingDirectory: "/")
        janitor = child
        janitorLifeline = lifeline
    }

    private func postgresCommand() -> [String] {
        var command = ["setpriv"]
        if let owner {
            command += ["--reuid=\(owner.uid)", "--regid=\(owner.gid)", "--clear-groups"]
        }
        command += ["--pdeathsig", "INT", "--",
                    Path.join(PostgresServer.binDirectory, "postgres"), "-D", dataDirectory, "-k", socketDirectory]
        let settings = [
            "listen_addresses=", "fsync=off", "synchronous_commit=off", "full_page_writes=off",
            "max_connections=100", "shared_buffers=16MB", "lc_messages=C", "log_min_messages=warning",
            "unix_socket_permissions=0700",
        ]
        for setting in settings { command += ["-c", setting] }
        return command
    }

    private func initialise() async throws {
        try POSIX.makeDirectories(socketDirectory, mode: 0o700)
        if let owner {
            for path in [baseDirectory, socketDirectory] where chown(path, owner.uid, owner.gid) != 0 {
                throw StackError.systemCall("chown \(path)", errno: errno)
            }
        }
        var arguments = ["-D", dataDirectory, "-U", PostgresServer.superuser, "--auth-local=trust", "--auth-host=reject",
                         "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]
        var executable = Path.join(PostgresServer.binDirectory, "initdb")
        if let owner {
            arguments = ["--reuid=\(owner.uid)", "--regid=\(owner.gid)", "--clear-groups", "--", executable] + arguments
            executable = "setpriv"
        }
        let output = try await Command(executable, arguments: arguments,
                                       environment: ["PATH": Command.defaultSearchPath, "LC_ALL": "C"],
                                       workingDirectory: baseDirectory).run(timeout: .seconds(120))
        guard output.status.isSuccess else {
            throw StackError(.systemCall, "initdb in \(dataDirectory) failed (\(output.status)): \(output.standardErrorText)")
        }
        let hba = Path.join(dataDirectory, "pg_hba.conf")
        try AtomicFile(path: hba, mode: 0o600).write(Array("""
            local all \(PostgresServer.superuser) trust
            local all all scram-sha-256

            """.utf8))
        if let owner, chown(hba, owner.uid, owner.gid) != 0 {
            throw StackError.systemCall("chown \(hba)", errno: errno)
        }
    }

    private func waitUntilReady(_ child: ChildProcess) async throws {
        let deadline = ContinuousClock.now.advanced(by: .seconds(60))
        var pause: Duration = .milliseconds(10)
        let pidFile = Path.join(dataDirectory, "postmaster.pid")
        while true {
            if let status = try child.exitStatusIfEnded() {
                keeper = nil
                close(keeperLifeline)
                keeperLifeline = -1
                throw StackError(.systemCall, "postgres in \(dataDirectory) exited (\(status)) before it was ready: \(logTail())")
            }
            // Line 8 of postmaster.pid is the postmaster's state; pg_ctl waits for "ready".
            if let bytes = try? POSIX.readFile(pidFile) {
                let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
                if lines.count >= 8, lines[7].trimmingCharacters() == "ready" { return }
            }
            if ContinuousClock.now >= deadline {
                throw StackError(.systemCall, "postgres in \(dataDirectory) not ready within 60 s: \(logTail())")
            }
            try await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(100))
        }
    }

    /// Closes the keeper's lifeline and waits up to 30 s for postgres and the keeper to
    /// exit, then kills them so nothing outlives the test.
    private func shutDown() async {
        guard let child = keeper else { return }
        keeper = nil
        close(keeperLifeline)
        keeperLifeline = -1
        if await !PostgresServer.wait(for: child, upTo: .seconds(30)) {
            if let pid = try? postmasterPID() { kill(pid, SIGKILL) }
            child.sendToGroup(SIGKILL)
            await PostgresServer.wait(for: child, upTo: .seconds(30))
        }
    }

    /// Waits for `child` to exit (pidfd + poll, so the wait itself has a deadline) and
    /// reaps it; `false` when it did not exit within `limit`.
    @discardableResult
    private static func wait(for child: ChildProcess, upTo limit: Duration) async -> Bool {
        let pid = child.pid
        let (seconds, attoseconds) = limit.components
        let milliseconds = Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000)
        return await BlockingCall.run {
            let descriptor = cs_pidfd_open(pid)
            guard descriptor >= 0 else { return false }
            defer { close(descriptor) }
            var event = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            var rc: Int32
            repeat { rc = poll(&event, 1, milliseconds) } while rc < 0 && errno == EINTR
            guard rc > 0 else { return false }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            return true
        }
    }

    private func postmasterPID() throws -> pid_t? {
        let bytes = try POSIX.readFile(Path.join(dataDirectory, "postmaster.pid"))
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").first.flatMap { pid_t($0) }
    }

    private func logTail() -> String {
        guard let bytes = try? POSIX.readFile(logFile) else { return "(no server log)" }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        return lines.suffix(15).joined(separator: " | ")
    }

    /// `nobody`'s uid/gid when running as root (PostgreSQL refuses to run as root), else nil.
    private static func serviceAccount() throws -> (uid: uid_t, gid: gid_t)? {
        guard geteuid() == 0 else { return nil }
        guard let entry = getpwnam("nobody") else {
            throw StackError(.invalidConfiguration, "running as root, but there is no user 'nobody' to run PostgreSQL as")
        }
        return (entry.pointee.pw_uid, entry.pointee.pw_gid)
    }
}

extension Substring {
    fileprivate func trimmingCharacters() -> Substring {
        var slice = self
        while let first = slice.first, first == " " || first == "\t" || first == "\r" { slice.removeFirst() }
        while let last = slice.last, last == " " || last == "\t" || last == "\r" { slice.removeLast() }
        return slice
    }
}
