import CSystem
import Logging
import StackCore
import StackPostgres
import Supervisord
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Rotates the four internal secrets inside the container (what `rotate-secrets` does).
///
/// ## Order and why (crash safety)
///
/// The publishable key (PCK) lives in four places: rotated-secrets.env, the built files
/// under `<WORK_DIR>/apps`, the ApiKeySet row, and the running servers. Only the files
/// are a problem after a crash: to rewrite them one must know which key they hold *now*,
/// and mid-rewrite some hold the old key and some the new. So:
///
/// 1. `prepare` — lock; read the journal, the previous env file and the row (a missing
///    row fails here, before anything changed). The keys the files may hold are: the
///    journal's old and new keys when a rotation was interrupted; otherwise the PCK of
///    the previous env file and of the row (they agree unless something else wrote
///    one), or the build placeholder when neither exists (first rotation, no DB).
/// 2. `journal` — written (atomic, 0600) *before* any of those places changes, listing
///    those old keys and the new one. From here on a re-run knows every key to look for.
/// 3. `envFile` — first, because a stack-app restarted by anyone else from now on
///    already reads (and, via its start-up upsert, writes to the row) the new keys.
/// 4. `rewrite` — each old key → new key, one pass each (normally exactly one), atomic
///    per file; `sync` then flushes them (one `syncfs`) before anything records success.
/// 5. `database` — last of the three: the moment the row changes, the old generation's
///    keys stop working, so this is kept right before the restart. One transaction.
/// 6. `commit` — env file, files and row agree; the journal becomes "restart pending"
///    (only the new PCK), or is removed when restarting is not ours to do.
/// 7. `restart`, `listen` — supervisord restarts stack-app and cron-jobs; we wait for
///    RUNNING and then for sockets the new generation opened.
/// 8. `finish` — the journal is removed; "done".
///
/// A kill -9 anywhere leaves a state one re-run turns consistent: before 2 nothing
/// changed; between 2 and 6 the journal names every key a file may hold, so re-running
/// with the same input rewrites the rest and writes env file and row again (each step
/// is idempotent); with a *different* input the new journal lists the interrupted
/// rotation's old and new keys as old keys, so every file converges on the newest key.
/// After 6 a re-run restarts again. Without a journal, the same input is a no-op.
public struct SecretRotator: Sendable {
    public let configuration: RotationConfiguration
    private let keyRewriter: any PublishableKeyRewriting
    private let logger: Logger
    private let logTimings: Bool
    private let willBegin: @Sendable (RotationStep) async -> Void

    /// - Parameters:
    ///   - logTimings: adds each step's elapsed time to its log line (`--timings`);
    ///     otherwise timings go to debug.
    ///   - willBegin: called before each step; the executable's test-only pause hook.
    public init(configuration: RotationConfiguration,
                keyRewriter: (any PublishableKeyRewriting)? = nil,
                logger: Logger,
                logTimings: Bool = false,
                willBegin: @escaping @Sendable (RotationStep) async -> Void = { _ in }) {
        self.configuration = configuration
        self.keyRewriter = keyRewriter ?? SecretRotator.defaultKeyRewriter
        self.logger = logger
        self.logTimings = logTimings
        self.willBegin = willBegin
    }

    static var defaultKeyRewriter: any PublishableKeyRewriting { StackRewriteKeyRewriter() }

    /// Runs the rotation to `secrets` (validated by `InternalSecrets.fresh`). Throws
    /// `RotationError`; whatever it leaves is finished by running again.
    @discardableResult
    public func rotate(to secrets: InternalSecrets) async throws -> RotationReport {
        var report = RotationReport()
        var clock = StepClock(logger: logger, logTimings: logTimings)
        let newKey = secrets.publishableClientKey
        let config = configuration

        // 1. prepare
        await willBegin(.prepare)
        let lock = try await RotationLock.acquire(path: config.lockPath, timeout: config.lockTimeout) { [logger] in
            logger.info("waiting for another rotate-secrets to finish (\(config.lockPath) is locked)")
        }
        defer { withExtendedLifetime(lock) {} }
        var appsStatus = stat()
        guard stat(config.appsDirectory, &appsStatus) == 0, appsStatus.st_mode & S_IFMT == S_IFDIR else {
            throw RotationError(.invalidConfiguration, "\(config.appsDirectory) is not a directory; nothing was changed (set STACK_RUNTIME_WORK_DIR or --work-dir to the app's work directory)")
        }
        let journal = try RotationJournal.read(path: config.journalPath)
        let previous = try RotatedSecretsFile.read(path: config.envFilePath)
        var database: (connection: PostgresConnection, row: ApiKeySetStore.Record)?
        if let connectionString = config.databaseConnectionString {
            database = try await connect(connectionString)
        }
        let row = database?.row
        report.resumedPhase = journal?.phase

        var candidates: [Secret] = []
        if let journal {
            candidates = journal.phase == .rewrite ? journal.oldPublishableKeys + [journal.newPublishableKey] : [journal.newPublishableKey]
        } else {
            candidates = [previous?.publishableKey, row?.publishableClientKey].compactMap { $0 }
            if candidates.isEmpty { candidates = [config.initialPublishableKey] }
        }
        var oldKeys: [Secret] = []
        for key in candidates where key.unredacted != newKey.unredacted && !oldKeys.contains(key) {
            oldKeys.append(key)
        }
        let renderedEnv = try RotatedSecretsFile.rendered(secrets)
        let envUpToDate = previous?.bytes == renderedEnv
        let rowUpToDate = row.map {
            $0.publishableClientKey == secrets.publishableClientKey && $0.secretServerKey == secrets.secretServerKey
                && $0.superSecretAdminKey == secrets.superSecretAdminKey
        } ?? true
        let situation = journal.map { "resuming an interrupted rotation (phase \($0.phase.rawValue))" }
            ?? (previous == nil ? "first rotation in this container" : "previous rotation found")
        clock.finish(.prepare, "\(situation); \(oldKeys.count) previous publishable key(s) to replace; database \(database.map { _ in "row found" } ?? "not configured")")

        if journal == nil && oldKeys.isEmpty && envUpToDate && rowUpToDate {
            report.alreadyRotated = true
            logger.info("env file, files and database already hold these secrets; nothing to do")
            logger.info("done")
            report.timings = clock.timings
            return report
        }

        // 2. journal
        await willBegin(.journal)
        try RotationJournal(phase: .rewrite, newPublishableKey: newKey, oldPublishableKeys: oldKeys).write(path: config.journalPath)
        clock.finish(.journal, "journal written to \(config.journalPath)")

        // 3. env file
        await willBegin(.envFile)
        if envUpToDate {
            clock.finish(.envFile, "\(config.envFilePath) already holds these secrets")
        } else {
            try RotatedSecretsFile.write(secrets, to: config.envFilePath)
            clock.finish(.envFile, "wrote \(config.envFilePath)")
        }

        // 4. rewrite
        await willBegin(.rewrite)
        var rewrite = KeyRewriteResult()
        for old in oldKeys {
            do {
                rewrite = rewrite + (try await keyRewriter.replace(old, with: newKey, under: config.appsDirectory))
            } catch let error as RotationError {
                throw error
            } catch {
                throw RotationError(.rewrite, "replace the publishable key under \(config.appsDirectory)", underlying: error)
            }
        }
        report.rewrite = rewrite
        if rewrite.filesChanged > 0 {
            clock.finish(.rewrite, "patched \(rewrite.filesChanged) file(s) under \(config.appsDirectory) (\(rewrite.occurrences) occurrence(s), \(rewrite.filesScanned) files scanned)")
        } else {
            clock.finish(.rewrite, "no file under \(config.appsDirectory) contained a previous publishable key (already rotated?)")
        }

        await willBegin(.sync)
        if rewrite.filesChanged == 0 {
            clock.finish(.sync, "nothing to sync")
        } else if config.syncRewrittenFiles {
            try Self.syncFileSystem(of: config.appsDirectory)
            clock.finish(.sync, "synced the file system of \(config.appsDirectory)")
        } else {
            clock.finish(.sync, "not synced (--no-sync)")
        }

        // 5. database
        await willBegin(.database)
        if let database {
            if rowUpToDate && journal == nil {
                clock.finish(.database, "internal ApiKeySet already holds these keys")
            } else {
                let write: ApiKeySetStore.Write
                do {
                    write = try await ApiKeySetStore(connection: database.connection).updateInternal(
                        pck: secrets.publishableClientKey, ssk: secrets.secretServerKey, sak: secrets.superSecretAdminKey)
                } catch {
                    throw RotationError(.database, "update the internal ApiKeySet", underlying: error)
                }
                report.databaseUpdated = true
                clock.finish(.database, "updated internal ApiKeySet (updatedAt \(write.updatedAt))")
            }
            database.connection.close()
        } else {
            clock.finish(.database, "no database connection string; ApiKeySet not updated")
        }

        // 6. commit
        await willBegin(.commit)
        if config.restart != nil {
            try RotationJournal(phase: .restart, newPublishableKey: newKey, oldPublishableKeys: []).write(path: config.journalPath)
            clock.finish(.commit, "env file, files and database agree; restart pending")
        } else {
            try RotationJournal.remove(path: config.journalPath)
            clock.finish(.commit, "env file, files and database agree")
        }

        // 7. restart, listen
        if let restart = config.restart {
            await willBegin(.restart)
            let probe = ListenerProbe()
            let before = restart.listenPorts.isEmpty ? [:] : try probe.listeners(ports: Set(restart.listenPorts))
            let client = SupervisordClient(socketPath: restart.socketPath, callTimeout: restart.timeout, logger: logger)
            let processes: [SupervisedProcess]
            do {
                processes = try await client.restart(restart.programs, timeout: restart.timeout)
            } catch {
                throw RotationError(.restart, "restart \(restart.programs.joined(separator: " ")) through supervisord at \(restart.socketPath)", underlying: error)
            }
            report.restarted = processes
            let pids = processes.map { "\($0.name) pid \($0.pid.map(String.init) ?? "none")" }.joined(separator: ", ")
            clock.finish(.restart, "restarted \(restart.programs.joined(separator: " ")): RUNNING (\(pids))")

            await willBegin(.listen)
            if restart.listenPorts.isEmpty {
                clock.finish(.listen, "no ports to wait for")
            } else {
                try await probe.waitForNewListeners(ports: restart.listenPorts, old: before, deadline: .now + restart.listenTimeout) {
                    // A generation that died will never listen: say so now, not at the deadline.
                    for process in processes {
                        let now = try? await client.processInfo(process.qualifiedName)
                        if let now, now.state != .running || now.pid != process.pid {
                            throw RotationError(.listen, "\(process.name) stopped while waiting for the new servers to listen (now \(now.state), last exit status \(now.exitStatus)); see \(now.standardErrorLogfile.isEmpty ? "its log" : now.standardErrorLogfile)")
                        }
                    }
                }
                clock.finish(.listen, "new generation listening on port(s) \(restart.listenPorts.map(String.init).joined(separator: ", "))")
            }

            // 8. finish
            await willBegin(.finish)
            try RotationJournal.remove(path: config.journalPath)
            clock.finish(.finish, "journal removed")
        } else {
            logger.info("restart skipped (no supervisord configured): restart stack-app and cron-jobs yourself so they read \(config.envFilePath)")
        }
        report.timings = clock.timings
        if logTimings {
            logger.info("timings: total \(StepClock.format(clock.total))")
        }
        logger.info("done")
        return report
    }

    private static func syncFileSystem(of directory: String) throws {
        do {
            let fd = try POSIX.open(directory, O_RDONLY | O_DIRECTORY)
            defer { POSIX.close(fd) }
            let rc = cs_syncfs(fd)
            if rc != 0 { throw StackError.systemCall("syncfs \(directory)", errno: -rc) }
        } catch {
            throw RotationError(.rewrite, "flush the rewritten files to disk", underlying: error)
        }
    }

    private func connect(_ connectionString: String) async throws -> (connection: PostgresConnection, row: ApiKeySetStore.Record) {
        do {
            let parsed = try PostgresConnectionString(connectionString)
            let connection = try await PostgresConnection.connect(
                to: parsed,
                options: PostgresConnectOptions(deadline: configuration.databaseConnectTimeout, applicationName: "rotate-secrets"),
                logger: logger)
            guard let row = try await ApiKeySetStore(connection: connection).readInternal() else {
                throw RotationError(.database, "no internal ApiKeySet row (\"projectId\" '\(ApiKeySetStore.internalProjectId)', id '\(ApiKeySetStore.internalKeySetId)') in \(parsed.target); nothing was changed (stack-entrypoint's start-up bootstrap creates it: check that it ran against this database)")
            }
            return (connection, row)
        } catch let error as RotationError {
            throw error
        } catch {
            throw RotationError(.database, "read the internal ApiKeySet", underlying: error)
        }
    }
}

/// What one rotation did.
public struct RotationReport: Sendable {
    /// Nothing was to be done: env file, files and row already held these secrets.
    public var alreadyRotated = false
    /// The phase of the interrupted rotation this run finished, if any.
    public var resumedPhase: RotationJournal.Phase?
    public var rewrite = KeyRewriteResult()
    public var databaseUpdated = false
    /// supervisord's view of the restarted programs (new pids).
    public var restarted: [SupervisedProcess] = []
    public var timings: [(step: RotationStep, elapsed: Duration)] = []

    public init() {}
}

/// Times the steps (wall clock, and with `--timings` also the process's CPU time, all
/// threads) and writes the one log line each step ends with.
struct StepClock {
    let logger: Logger
    let logTimings: Bool
    private let started = ContinuousClock.now
    private var last = ContinuousClock.now
    private var lastCPU = StepClock.cpuTime()
    private(set) var timings: [(step: RotationStep, elapsed: Duration)] = []

    init(logger: Logger, logTimings: Bool) {
        self.logger = logger
        self.logTimings = logTimings
    }

    var total: Duration { started.duration(to: .now) }

    mutating func finish(_ step: RotationStep, _ message: String) {
        let now = ContinuousClock.now
        let elapsed = last.duration(to: now)
        last = now
        timings.append((step, elapsed))
        if logTimings {
            let cpu = StepClock.cpuTime()
            defer { lastCPU = cpu }
            logger.info("\(message)", metadata: [
                "step": "\(step)", "elapsed": "\(StepClock.format(elapsed))", "cpu": "\(StepClock.format(cpu - lastCPU))",
            ])
        } else {
            logger.info("\(message)")
            logger.debug("step \(step) took \(StepClock.format(elapsed))")
        }
    }

    /// User + system time of the whole process.
    static func cpuTime() -> Duration {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func duration(_ time: timeval) -> Duration { .seconds(time.tv_sec) + .microseconds(time.tv_usec) }
        return duration(usage.ru_utime) + duration(usage.ru_stime)
    }

    /// `12.3 ms`.
    static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let tenthsOfMs = seconds * 10_000 + attoseconds / 100_000_000_000_000
        return "\(tenthsOfMs / 10).\(tenthsOfMs % 10) ms"
    }
}
