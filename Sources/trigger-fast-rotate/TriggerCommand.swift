import ArgumentParser
import GuestTrigger
import Logging
import StackCore

/// `trigger-fast-rotate`: run by qemu-guest-agent `guest-exec` with the four fresh
/// secrets as `input-data` (stdin). Exit status: rotate-secrets' (through the container
/// runtime), 1 for invalid input, 128+N when the runtime died of signal N.
/// Log lines go to stdout like rotate-secrets', so the agent's capture reads in order.
@main
struct TriggerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trigger-fast-rotate",
        abstract: "Pass the fresh secrets on stdin to rotate-secrets in the stack container.",
        discussion: """
            stdin: exactly the four lines STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY=…, \
            STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY=…, STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY=…, \
            CRON_SECRET=… (64 hex each; at most 64 KiB). The values reach the container through the runtime's \
            environment (`exec -e NAME`), never a command line or a file.

            Environment (flags win): STACK_CONTAINER_RUNTIME (default docker), STACK_CONTAINER_NAME (default stack), \
            STACK_ROTATE_SECRETS_COMMAND (default /usr/local/bin/rotate-secrets), STACK_LOG_LEVEL.
            """)

    @Option(help: "Container runtime CLI, e.g. docker or podman.")
    var runtime: String?

    @Option(help: "Container to run rotate-secrets in.")
    var container: String?

    @Option(help: "rotate-secrets' path inside the container.")
    var rotateCommand: String?

    func run() async throws {
        let environment = ProcessEnvironment.current
        let level = StackLogging.level(named: environment["STACK_LOG_LEVEL"]) ?? .info
        LoggingSystem.bootstrap { _ in StackLogHandler(prefix: "trigger-fast-rotate", level: level, descriptor: 1) }
        let logger = Logger(label: "trigger-fast-rotate")

        func setting(_ flag: String?, _ variable: String, _ fallback: String) -> String {
            if let flag, !flag.isEmpty { return flag }
            if let value = environment[variable], !value.isEmpty { return value }
            return fallback
        }
        let defaults = TriggerConfiguration()
        let configuration = TriggerConfiguration(
            runtime: setting(runtime, "STACK_CONTAINER_RUNTIME", defaults.runtime),
            container: setting(container, "STACK_CONTAINER_NAME", defaults.container),
            rotateCommand: setting(rotateCommand, "STACK_ROTATE_SECRETS_COMMAND", defaults.rotateCommand))
        let trigger = FastRotateTrigger(configuration: configuration, environment: environment, logger: logger)
        let code: Int32
        do {
            let secrets = try trigger.parse(try trigger.readInput())
            code = try await trigger.run(secrets: secrets).shellCode
        } catch {
            logger.error("\(error)")
            throw ExitCode.failure
        }
        if code != 0 { throw ExitCode(code) }
    }
}
