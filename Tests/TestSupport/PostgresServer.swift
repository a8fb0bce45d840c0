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
/// - No orphans: postgres runs under a tiny `sh` keeper whose stdin is a pipe (the
///   "lifeline") held only by this process. When the lifeline closes — `remove()`, or the
///   test process exiting or being killed — the keeper fast-shuts postgres down, waits for
///   it and deletes the directory. If the keeper itself is killed, postgres gets SIGINT
///   through `setpriv --pdeathsig`.
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
    private var lifeline: Int32 = -1
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
        var fds: [Int32] = [-1, -1]
        let rc = fds.withUnsafeMutableBufferPointer { cs_pipe($0.baseAddress!) }
        guard rc == 0 else { throw StackError.systemCall("pipe", errno: -rc) }
        let child: ChildProcess
        do {
            child = try Command(
                "/bin/sh", arguments: ["-c", PostgresServer.keeperScript, "postgres-keeper", baseDirectory] + postgresCommand(),
                environment: ["PATH": Command.defaultSearchPath, "LC_ALL": "C"],
                workingDirectory: baseDirectory, processGroup: .new,
                standardInput: .fileDescriptor(fds[0]), standardOutput: .discard, standardError: .discard
            ).spawn()
        } catch {
            close(fds[0]); close(fds[1])
            throw error
        }
        close(fds[0])
        keeper = child
        lifeline = fds[1]
        do {
            try await waitUntilReady(child)
        } catch {
            await shutDown(keepData: true)
            throw error
        }
    }

    /// Fast shutdown; the data directory stays, so `start()` brings the same cluster back.
    public func stop() async {
        await shutDown(keepData: true)
    }

    /// Stops the server if it runs and deletes its directory.
    public func remove() async {
        guard !removed else { return }
        removed = true
        await shutDown(keepData: false)
        _ = try? await Command("/bin/rm", arguments: ["-rf", baseDirectory], environment: [:]).run(timeout: .seconds(60))
    }

    // MARK: - Internals

    /// The keeper (see the type's comment). $1 is the base directory, the rest the
    /// postgres command. Background jobs of a non-interactive shell ignore SIGINT, but
    /// postgres installs its own handlers, so `kill -INT` still means fast shutdown.
    static let keeperScript = #"""
    dir=$1; shift
    exec 3<&0 </dev/null
    "$@" 3<&- >>"$dir/postgres.log" 2>&1 &
    pg=$!
    (
      if IFS= read -r request <&3 && [ "$request" = keep ]; then :; else : >"$dir/.remove"; fi
      kill -INT "$pg" 2>/dev/null
    ) &
    reader=$!
    exec 3<&-
    wait "$pg"
    status=$?
    kill "$reader" 2>/dev/null
    if [ -e "$dir/.remove" ]; then rm -rf "$dir"; fi
    exit "$status"
    """#

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
                close(lifeline)
                lifeline = -1
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

    /// Closes the lifeline (asking the keeper to keep or delete the directory) and waits
    /// up to 30 s for postgres and its keeper to exit, then kills the keeper's group.
    private func shutDown(keepData: Bool) async {
        guard let child = keeper else { return }
        keeper = nil
        if keepData {
            var request = Array("keep\n".utf8)
            _ = request.withUnsafeMutableBytes { write(lifeline, $0.baseAddress, $0.count) }
        }
        close(lifeline)
        lifeline = -1
        let exited: Bool = await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await child.waitForExit()) != nil }
            group.addTask {
                try? await Task.sleep(for: .seconds(30))
                return false
            }
            let first = await group.next() ?? false
            if !first {
                // Postgres did not stop: kill it (and the keeper) so nothing outlives the test.
                if let pid = try? postmasterPID() { kill(pid, SIGKILL) }
                child.sendToGroup(SIGKILL)
                _ = await group.next()
            }
            group.cancelAll()
            return first
        }
        _ = exited
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
