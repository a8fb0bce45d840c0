import Logging
import StackCore
import StackProcess

/// The guest side of a rotated resume (§3.1): the host's guest agent runs it with the
/// four fresh secrets on stdin; it validates them all, then runs
/// `docker exec -e NAME … stack /usr/local/bin/rotate-secrets` with the values in the
/// runtime's *environment* — the command line names the variables only — and returns
/// rotate-secrets' exit status. Nothing is written to disk (the shell version spooled
/// stdin to a temp file and sourced it).
public struct FastRotateTrigger: Sendable {
    public let configuration: TriggerConfiguration
    /// The environment the runtime CLI gets besides the four secrets (PATH, DOCKER_HOST …).
    private let environment: [String: String]
    private let logger: Logger

    public init(configuration: TriggerConfiguration = TriggerConfiguration(), environment: [String: String], logger: Logger) {
        self.configuration = configuration
        self.environment = environment
        self.logger = logger
    }

    /// Reads stdin (at most `inputLimit` bytes) from `fd`.
    public func readInput(from fd: Int32 = 0) throws -> [UInt8] {
        do {
            return try POSIX.readAll(fd, limit: configuration.inputLimit, context: "stdin")
        } catch let error as StackError where error.code == .tooLarge {
            throw TriggerError(.invalidInput, "stdin holds more than \(configuration.inputLimit) bytes; expected four NAME=<64 hex> lines")
        } catch {
            throw TriggerError(.invalidInput, "read stdin: \(error)")
        }
    }

    /// Strict `NAME=value` lines, exactly the four names, each a fresh hex64 value
    /// (placeholders rejected, §5.4 #27). Nothing runs unless all four are valid.
    public func parse(_ input: [UInt8]) throws -> InternalSecrets {
        do {
            return try InternalSecrets.parse(payload: input, source: "stdin")
        } catch {
            throw TriggerError(.invalidInput, "\(error)")
        }
    }

    /// The runtime invocation: values only in `environment`, never in `arguments`.
    public func command(for secrets: InternalSecrets) -> Command {
        var arguments = ["exec"]
        var childEnvironment = environment
        for name in InternalSecrets.Name.allCases {
            arguments += ["-e", name.variable]
            childEnvironment[name.variable] = secrets[name].unredacted
        }
        arguments += [configuration.container, configuration.rotateCommand]
        return Command(configuration.runtime, arguments: arguments, environment: childEnvironment)
    }

    /// Runs rotate-secrets in the container with `secrets`; its output goes straight to
    /// ours (inherited descriptors). Returns how the runtime CLI ended.
    public func run(secrets: InternalSecrets) async throws -> ExitStatus {
        let command = command(for: secrets)
        logger.info("running \(configuration.rotateCommand) in container \(configuration.container) via \(configuration.runtime)")
        let child: ChildProcess
        do {
            child = try command.spawn()
        } catch {
            throw TriggerError(.runtimeFailed, "start \(configuration.runtime): \(error)")
        }
        let status: ExitStatus
        do {
            status = try await child.waitForExit()
        } catch {
            throw TriggerError(.runtimeFailed, "wait for \(configuration.runtime): \(error)")
        }
        if status.isSuccess {
            logger.info("rotation finished")
        } else {
            logger.error("\(configuration.runtime) exec \(configuration.container) \(configuration.rotateCommand) ended with \(status)")
        }
        return status
    }
}
