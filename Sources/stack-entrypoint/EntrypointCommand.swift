import ArgumentParser
import StackEntrypoint

/// `stack-entrypoint [run]` and `stack-entrypoint prepare`.
struct EntrypointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stack-entrypoint",
        abstract: "Container entrypoint of the Stack Auth server: prepares the app and runs backend + dashboard.",
        discussion: """
            Reads the container environment as the original entrypoint did (STACK_RUNTIME_WORK_DIR, \
            NEXT_PUBLIC_STACK_IS_LOCAL_EMULATOR, STACK_SEED_INTERNAL_PROJECT_*, STACK_DATABASE_CONNECTION_STRING, \
            STACK_SKIP_MIGRATIONS, STACK_FORWARD_MOCK_OAUTH_SERVER, …); see README.md.
            """,
        subcommands: [Run.self, Prepare.self],
        defaultSubcommand: Run.self)

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Prepare, then run both servers until they exit or a signal stops them (the default).")
        @OptionGroup var options: EntrypointOptions
    }

    struct Prepare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run every step up to (not including) starting the servers and print a one-line summary.")
        @OptionGroup var options: EntrypointOptions
    }
}

struct EntrypointOptions: ParsableArguments {
    @Option(help: "The tree baked into the image; migrations run in its apps/backend.")
    var appDir = "/app"

    @Option(help: "Where the servers run from (default: $STACK_RUNTIME_WORK_DIR or /var/tmp/stack-runtime).")
    var workDir: String?

    @Option(help: "The rotated-secrets overlay (strict KEY=VALUE) applied over the environment.")
    var rotatedSecrets = EntrypointConfiguration.defaultRotatedSecretsPath

    @Option(help: "Seconds from a shutdown request until the servers are killed (env STACK_SHUTDOWN_GRACE_SECONDS).")
    var gracePeriod: Double?

    @Option(help: "Seconds the API key set bootstrap waits for PostgreSQL.")
    var databaseWait: Double = 60

    @Option(help: "Log level: trace, debug, info, notice, warning, error (env STACK_LOG_LEVEL).")
    var logLevel: String?
}
