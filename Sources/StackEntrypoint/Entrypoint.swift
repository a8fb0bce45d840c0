import Logging
import StackCore
import StackPostgres
import StackProcess
import StackRewrite

/// The container entrypoint: applies the rotated-secrets overlay, derives the servers'
/// environment, runs migrations and the seed, bootstraps the emulator's internal API
/// key set, prepares the work directory (copy + sentinel substitution in one pass), then
/// runs the backend and dashboard under a `Supervisor` as a proper PID 1.
public struct Entrypoint: Sendable {
    /// What `prepare()` did, for the log and `stack-entrypoint prepare`'s summary.
    public struct Preparation: Sendable {
        public let environment: ServerEnvironment
        public let sentinels: SentinelPreparation.Outcome
        public let elapsed: Duration

        /// One line: `files scanned N, files changed N, tokens replaced N, elapsed 1.23s`.
        public var summary: String {
            let rewrite = sentinels.rewrite ?? RewriteSummary()
            let copied: String
            if case .copied(let copy) = sentinels {
                copied = ", files copied \(copy.filesCopied)"
            } else if case .alreadyReplaced = sentinels {
                copied = ", sentinels already replaced"
            } else {
                copied = ""
            }
            return "files scanned \(rewrite.filesScanned), files changed \(rewrite.filesChanged), "
                + "tokens replaced \(rewrite.tokensReplaced)\(copied), elapsed \(Entrypoint.seconds(elapsed))"
        }
    }

    public let configuration: EntrypointConfiguration
    private let signals: SignalSource
    private let reaper: Reaper
    private let logger: Logger

    public init(configuration: EntrypointConfiguration, signals: SignalSource, reaper: Reaper, logger: Logger) {
        self.configuration = configuration
        self.signals = signals
        self.reaper = reaper
        self.logger = logger
    }

    /// Every step up to (not including) starting the servers.
    public func prepare() async throws -> Preparation {
        let started = ContinuousClock.now
        let overlay = try readOverlay()
        let environment = try ServerEnvironment.derive(container: configuration.environment, overlay: overlay,
                                                       randomKey: Entrypoint.randomBase64Key)
        try await runDatabaseScript("migrate", skip: "STACK_SKIP_MIGRATIONS", run: "STACK_RUN_MIGRATIONS",
                                    running: "Running migrations...", skipping: "Skipping migrations.", environment: environment)
        try await runDatabaseScript("seed", skip: "STACK_SKIP_SEED_SCRIPT", run: "STACK_RUN_SEED_SCRIPT",
                                    running: "Running seed script...", skipping: "Skipping seed script.", environment: environment)
        try await bootstrapInternalKeySet(environment)
        let sentinels = try await prepareWorkDirectory(environment)
        return Preparation(environment: environment, sentinels: sentinels, elapsed: ContinuousClock.now - started)
    }

    /// Prepares, then runs the servers until they exit or a signal stops them.
    /// Returns the process exit code: the first server's (128 + signal if it was
    /// killed), 128 + signal for a signal before the servers started, 1 for a failed step.
    public func run() async -> Int32 {
        let forwarder: TCPForwarder?
        do {
            forwarder = try configuration.forwarder.map { try TCPForwarder(configuration: $0, logger: logger) }
        } catch {
            logger.error("cannot start the mock OAuth forwarder: \(error)")
            return 1
        }
        if let forwarder {
            logger.info("Forwarding mock OAuth 0.0.0.0:\(forwarder.port) -> \(forwarder.configuration.upstreamHost):\(forwarder.configuration.upstreamPort)")
        }

        let preparation: Preparation
        do {
            preparation = try await signals.cancellingOnShutdown { try await prepare() }
        } catch let error as ProcessError where error.code == .shutdownRequested {
            let signal = signals.shutdownSignal ?? .terminate
            logger.info("\(signal) received before the servers started; exiting")
            return 128 + signal.rawValue
        } catch let error as EntrypointError {
            logger.error("\(error.message)")
            return error.exitCode
        } catch {
            logger.error("\(error)")
            return 1
        }

        let environment = preparation.environment
        logger.info("Starting backend on port \(environment.backendPort)...")
        logger.info("Starting dashboard on port \(environment.dashboardPort)...")
        let supervisor = Supervisor(
            Supervisor.Configuration(
                children: [
                    Supervisor.Child("backend", serverCommand("apps/backend/server.js", port: environment.backendPort, environment)),
                    Supervisor.Child("dashboard", serverCommand("apps/dashboard/server.js", port: environment.dashboardPort, environment)),
                ],
                gracePeriod: configuration.gracePeriod),
            signals: signals, reaper: reaper, logger: logger)
        let services = forwarder.map { [SupervisedService("mock-oauth-forwarder", $0)] } ?? []
        let outcome = await supervisor.run(services: services)
        if let first = outcome.firstExit {
            logger.info("\(first.name) exited (\(first.status)); exit code \(outcome.exitCode)")
        }
        return outcome.exitCode
    }

    // MARK: steps

    private func readOverlay() throws -> EnvFile? {
        let path = configuration.rotatedSecretsPath
        guard POSIX.exists(path) else { return nil }
        do {
            let overlay = try EnvFile.read(path: path)
            logger.info("Applying rotated secrets from \(path) (\(overlay.keys.count) variables)")
            return overlay
        } catch let error as StackError {
            throw EntrypointError(.invalidOverlay, "cannot apply rotated secrets: \(error.message)")
        }
    }

    private func runDatabaseScript(_ name: String, skip: String, run: String, running: String, skipping: String,
                                   environment: ServerEnvironment) async throws {
        if environment.isSkipped(skip: skip, run: run) {
            logger.info("\(skipping)")
            return
        }
        logger.info("\(running)")
        let directory = Path.join(configuration.appDirectory, "apps/backend")
        let command = Command(configuration.nodeExecutable, arguments: ["dist/db-migrations.mjs", name],
                              environment: environment.variables, workingDirectory: directory, processGroup: .new)
        let status: ExitStatus
        do {
            status = try await command.status(waiter: reaper)
        } catch let error as ProcessError where error.code != .shutdownRequested {
            throw EntrypointError(.commandFailed, "db-migrations.mjs \(name) could not run: \(error)")
        }
        guard status.isSuccess else {
            throw EntrypointError(.commandFailed, "db-migrations.mjs \(name) failed (\(status)) in \(directory)",
                                  exitCode: status.shellCode == 0 ? 1 : status.shellCode)
        }
    }

    private func bootstrapInternalKeySet(_ environment: ServerEnvironment) async throws {
        let variables = environment.variables
        guard environment.isLocalEmulator,
              !(variables[ServerEnvironment.publishableKeyVariable] ?? "").isEmpty,
              let database = variables["STACK_DATABASE_CONNECTION_STRING"], !database.isEmpty
        else { return }
        let keys = try environment.bootstrapKeys()
        logger.info("Bootstrapping internal API key set (emulator runtime)...")
        do {
            let connection = try await PostgresConnection.connect(
                to: try PostgresConnectionString(database),
                options: PostgresConnectOptions(deadline: configuration.databaseConnectDeadline), logger: logger)
            let write = try await ApiKeySetStore(connection: connection).upsertInternal(pck: keys.pck, ssk: keys.ssk, sak: keys.sak)
            logger.info("Internal API key set \(write)")
        } catch let error as PostgresError {
            throw EntrypointError(.bootstrapFailed, "cannot bootstrap the internal API key set: \(error)")
        }
    }

    private func prepareWorkDirectory(_ environment: ServerEnvironment) async throws -> SentinelPreparation.Outcome {
        let work = configuration.workDirectory
        let preparation = SentinelPreparation(SentinelPreparation.Configuration(
            imageDirectory: configuration.appDirectory, workDirectory: work,
            values: SentinelValues(environment.variables),
            options: RewriteOptions(durability: .syncFileSystemAtEnd, logger: logger)))
        do {
            let outcome = try await preparation.run()
            switch outcome {
            case .alreadyReplaced:
                logger.info("Sentinels already replaced in \(work); skipping scan")
            case .replacedInPlace(let summary):
                logger.info("Replaced sentinels in place: \(summary)")
            case .copied(let summary):
                logger.info("Copied \(configuration.appDirectory) to \(work) replacing sentinels: \(summary)")
            }
            return outcome
        } catch let error as RewriteError {
            throw EntrypointError(.prepareFailed, "cannot prepare \(work): \(error)")
        }
    }

    private func serverCommand(_ script: String, port: String, _ environment: ServerEnvironment) -> Command {
        Command(configuration.nodeExecutable, arguments: [script], environment: environment.forServer(port: port),
                workingDirectory: configuration.workDirectory, processGroup: .new)
    }

    // MARK: helpers

    /// A non-emulator start without keys gets 32 CSPRNG bytes, base64 (44 characters),
    /// as the image always did.
    @Sendable static func randomBase64Key() -> String {
        Base64.encode(Secret.randomBytes(32))
    }

    static func seconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        return "\(milliseconds / 1000).\(String(repeating: "0", count: 3 - String(milliseconds % 1000).count))\(milliseconds % 1000)s"
    }
}
