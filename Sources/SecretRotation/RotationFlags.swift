import StackCore

/// What the `rotate-secrets` command line said; `nil` means "not given", so the
/// container environment or the default applies (see `RotationConfiguration.resolve`).
public struct RotationFlags: Sendable {
    public var envFilePath: String?
    public var workDirectory: String?
    public var supervisorSocket: String?
    public var noRestart = false
    public var restartTimeout: Duration?
    /// The variable holding the libpq connection string.
    public var databaseURLVariable = "STACK_DATABASE_CONNECTION_STRING"
    public var noWaitForListen = false
    public var noSync = false
    public var listenTimeout: Duration?
    /// Explicit ports; empty: derived from the environment.
    public var listenPorts: [Int] = []

    public init() {}
}

extension RotationConfiguration {
    /// Environment variables `resolve` reads (flags win over them):
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `STACK_ROTATED_SECRETS_FILE` | where the seven lines go (and the journal and lock beside it) | `/run/stack-auth/rotated-secrets.env` |
    /// | `STACK_RUNTIME_WORK_DIR` | WORK_DIR; files under `<WORK_DIR>/apps` are patched | `/app` |
    /// | `STACK_DATABASE_CONNECTION_STRING` (name: `--database-url-from-env`) | libpq connection string; empty skips the row update | — |
    /// | `STACK_ROTATE_NO_RESTART` | `1`/`true`: image without supervisord, do not restart | restart |
    /// | `STACK_SUPERVISOR_SOCKET` | supervisord's unix socket | `/var/run/supervisor.sock` |
    /// | `STACK_ROTATE_SYNC` | `0`/`false`: no `syncfs` after rewriting files | sync |
    /// | `STACK_ROTATE_WAIT_LISTEN` | `0`/`false`: do not wait for the new listeners | wait |
    /// | `BACKEND_PORT`, `DASHBOARD_PORT` | ports the new generation must listen on | `<P>02`, `<P>01` |
    /// | `NEXT_PUBLIC_STACK_PORT_PREFIX` | `P` | `81` |
    public static func resolve(flags: RotationFlags, environment: [String: String]) throws -> RotationConfiguration {
        func value(_ name: String) -> String? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            return text
        }
        func boolean(_ name: String) throws -> Bool? {
            guard let text = value(name) else { return nil }
            switch text.lowercased() {
            case "1", "true", "yes": return true
            case "0", "false", "no": return false
            default: throw RotationError(.invalidConfiguration, "\(name) must be 1/true/yes or 0/false/no")
            }
        }
        func port(_ name: String, _ text: String) throws -> Int {
            guard let number = Int(text), (1...65535).contains(number) else {
                throw RotationError(.invalidConfiguration, "\(name) must be a TCP port (1-65535), not \"\(text)\"")
            }
            return number
        }

        var restart: Restart?
        let noRestart = try flags.noRestart || (boolean("STACK_ROTATE_NO_RESTART") ?? false)
        if !noRestart {
            var settings = Restart()
            if let socket = flags.supervisorSocket ?? value("STACK_SUPERVISOR_SOCKET") { settings.socketPath = socket }
            if let timeout = flags.restartTimeout { settings.timeout = timeout }
            if let timeout = flags.listenTimeout { settings.listenTimeout = timeout }
            let wait = try !flags.noWaitForListen && (boolean("STACK_ROTATE_WAIT_LISTEN") ?? true)
            if wait {
                if !flags.listenPorts.isEmpty {
                    settings.listenPorts = try flags.listenPorts.map { try port("--wait-for-port", String($0)) }
                } else {
                    let prefix = value("NEXT_PUBLIC_STACK_PORT_PREFIX") ?? "81"
                    settings.listenPorts = [
                        try port("BACKEND_PORT", value("BACKEND_PORT") ?? "\(prefix)02"),
                        try port("DASHBOARD_PORT", value("DASHBOARD_PORT") ?? "\(prefix)01"),
                    ]
                }
            }
            restart = settings
        }
        guard EnvFile.isValidKey(flags.databaseURLVariable) else {
            throw RotationError(.invalidConfiguration, "--database-url-from-env must name an environment variable, not \"\(flags.databaseURLVariable)\"")
        }
        let sync = try !flags.noSync && (boolean("STACK_ROTATE_SYNC") ?? true)
        return RotationConfiguration(
            envFilePath: flags.envFilePath ?? value("STACK_ROTATED_SECRETS_FILE") ?? RotationConfiguration.defaultEnvFilePath,
            workDirectory: flags.workDirectory ?? value("STACK_RUNTIME_WORK_DIR") ?? RotationConfiguration.defaultWorkDirectory,
            databaseConnectionString: value(flags.databaseURLVariable),
            restart: restart,
            syncRewrittenFiles: sync)
    }
}

/// Where the four fresh secrets come from.
public enum RotationInput {
    /// Names a strict env file holding exactly the four secrets (legacy `STACK_ROTATE_INPUT`,
    /// which used to be sourced as shell code; it is parsed, never evaluated).
    public static let fileVariable = "STACK_ROTATE_INPUT"

    /// The file named by `STACK_ROTATE_INPUT` when set, else the four variables of
    /// `environment`. Missing, malformed and placeholder values are rejected with an
    /// error naming the variable (§2.3 step 2, §5.4 #27).
    public static func read(environment: [String: String]) throws -> (secrets: InternalSecrets, source: String) {
        if let path = environment[fileVariable], !path.isEmpty {
            let bytes: [UInt8]
            do {
                bytes = try POSIX.readFile(path, limit: 64 * 1024)
            } catch {
                throw RotationError(.invalidInput, "\(fileVariable)", underlying: error)
            }
            do {
                return (try InternalSecrets.parse(payload: bytes, source: path), path)
            } catch {
                throw RotationError(.invalidInput, "\(error)")
            }
        }
        do {
            return (try InternalSecrets.fresh(from: { environment[$0] }), "environment")
        } catch {
            throw RotationError(.invalidInput, "\(error)")
        }
    }
}
