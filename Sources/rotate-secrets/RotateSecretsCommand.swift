import ArgumentParser
import Logging
import SecretRotation
import StackCore
#if canImport(Glibc)
import Glibc
#endif

/// `rotate-secrets`: replaces the internal project's keys and CRON_SECRET inside the
/// container after a snapshot resume. Thin: flags and environment become a
/// `RotationConfiguration`, the work is `SecretRotator`'s.
///
/// Logging: every line, errors included, goes to **stdout** prefixed `[rotate-secrets]`,
/// as the shell script did, so the guest agent's capture keeps them in order in one
/// stream; stderr stays empty unless the runtime itself fails.
@main
struct RotateSecretsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate-secrets",
        abstract: "Rotate the internal project's keys and CRON_SECRET (env file, built files, database, running apps).",
        discussion: """
            Reads STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY, STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY, \
            STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY and CRON_SECRET from the environment, or all four \
            from the env file named by STACK_ROTATE_INPUT (parsed, never executed). Each must be 64 hex \
            characters and not the build placeholder.

            Environment (flags win): STACK_RUNTIME_WORK_DIR (default /app), STACK_DATABASE_CONNECTION_STRING, \
            STACK_ROTATED_SECRETS_FILE (default /run/stack-auth/rotated-secrets.env), \
            STACK_ROTATE_NO_RESTART=1 (images without supervisord), STACK_SUPERVISOR_SOCKET, \
            STACK_ROTATE_WAIT_LISTEN=0, STACK_ROTATE_SYNC=0, BACKEND_PORT / DASHBOARD_PORT / NEXT_PUBLIC_STACK_PORT_PREFIX \
            (ports the restarted servers must listen on), STACK_LOG_LEVEL.

            Re-running with the same input after any failure or crash finishes the rotation; \
            when it already completed, nothing changes.
            """)

    @Option(help: "Where the rotated secrets are written (0600; default: $STACK_ROTATED_SECRETS_FILE or /run/stack-auth/rotated-secrets.env). The journal and lock go beside it.")
    var envFilePath: String?

    @Option(help: "WORK_DIR: the publishable key is replaced in every file under <work-dir>/apps (default: $STACK_RUNTIME_WORK_DIR or /app).")
    var workDir: String?

    @Option(help: "supervisord's unix control socket (default: $STACK_SUPERVISOR_SOCKET or /var/run/supervisor.sock).")
    var supervisorSocket: String?

    @Flag(help: "Do not restart stack-app and cron-jobs (images without supervisord; also STACK_ROTATE_NO_RESTART=1).")
    var noRestart = false

    @Option(help: "Seconds allowed for supervisord to stop, start and report both programs RUNNING.")
    var restartTimeout: Double = 60

    @Flag(help: "After RUNNING, do not wait for the new servers to listen (also STACK_ROTATE_WAIT_LISTEN=0).")
    var noWaitListen = false

    @Option(help: "Seconds allowed, after RUNNING, for the new servers to listen.")
    var listenTimeout: Double = 120

    @Option(name: .customLong("wait-for-port"), help: "A port the new generation must listen on (repeatable; default: BACKEND_PORT and DASHBOARD_PORT, or <prefix>02 and <prefix>01).")
    var waitForPorts: [Int] = []

    @Option(help: "Name of the environment variable holding the libpq connection string (empty or unset: the row is not updated).")
    var databaseUrlFromEnv = "STACK_DATABASE_CONNECTION_STRING"

    @Flag(help: "Do not syncfs after rewriting files (a kill is still safe; a power cut may lose the rewrite). Also STACK_ROTATE_SYNC=0.")
    var noSync = false

    @Flag(help: "Log each step's elapsed time on its line.")
    var timings = false

    @Option(help: "trace, debug, info, warning, error (default: $STACK_LOG_LEVEL or info).")
    var logLevel: String?

    /// Test only: stop (SIGSTOP) before the named step, after printing the pid.
    static let pauseVariable = "STACK_ROTATE_TEST_PAUSE_BEFORE"

    func run() async throws {
        let environment = ProcessEnvironment.current
        let level = StackLogging.level(named: logLevel ?? environment["STACK_LOG_LEVEL"]) ?? .info
        LoggingSystem.bootstrap { _ in StackLogHandler(prefix: "rotate-secrets", level: level, descriptor: 1) }
        let logger = Logger(label: "rotate-secrets")

        do {
            var flags = RotationFlags()
            flags.envFilePath = envFilePath
            flags.workDirectory = workDir
            flags.supervisorSocket = supervisorSocket
            flags.noRestart = noRestart
            flags.restartTimeout = try Self.duration(restartTimeout, "--restart-timeout")
            flags.noWaitForListen = noWaitListen
            flags.noSync = noSync
            flags.listenTimeout = try Self.duration(listenTimeout, "--listen-timeout")
            flags.listenPorts = waitForPorts
            flags.databaseURLVariable = databaseUrlFromEnv
            let configuration = try RotationConfiguration.resolve(flags: flags, environment: environment)

            let input = try RotationInput.read(environment: environment)
            if input.source != "environment" { logger.info("reading fresh secrets from \(input.source)") }

            let pauseBefore = try Self.pauseStep(environment)
            let rotator = SecretRotator(configuration: configuration, logger: logger, logTimings: timings) { step in
                if step == pauseBefore { Self.pause(before: step) }
            }
            try await rotator.rotate(to: input.secrets)
        } catch {
            logger.error("\(error)")
            throw ExitCode.failure
        }
    }

    static func duration(_ seconds: Double, _ flag: String) throws -> Duration {
        guard seconds.isFinite, seconds > 0 else {
            throw RotationError(.invalidConfiguration, "\(flag) must be a positive number of seconds")
        }
        return .milliseconds(Int64(seconds * 1000))
    }

    static func pauseStep(_ environment: [String: String]) throws -> RotationStep? {
        guard let name = environment[pauseVariable], !name.isEmpty else { return nil }
        guard let step = RotationStep(rawValue: name) else {
            throw RotationError(.invalidConfiguration, "\(pauseVariable) must be one of \(RotationStep.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return step
    }

    /// Announces the pause on stdout, then stops until SIGCONT (or dies by SIGKILL).
    static func pause(before step: RotationStep) {
        let line = Array("[rotate-secrets] test pause before \(step) pid=\(getpid())\n".utf8)
        line.withUnsafeBytes { _ = write(1, $0.baseAddress, $0.count) }
        raise(SIGSTOP)
    }
}
