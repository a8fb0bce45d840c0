import StackCore

/// Everything `stack-entrypoint` needs, read once at the edge (flags and the container
/// environment) and passed in; nothing below reads the process environment.
public struct EntrypointConfiguration: Sendable {
    /// The container environment the servers' environment is derived from.
    public var environment: [String: String]
    /// The tree baked into the image (`/app`); migrations run in its `apps/backend`.
    public var appDirectory: String
    /// Where the servers run from (`STACK_RUNTIME_WORK_DIR`, default `/var/tmp/stack-runtime`).
    public var workDirectory: String
    /// The rotated-secrets overlay written by `rotate-secrets`.
    public var rotatedSecretsPath: String
    /// `node`, resolved through the environment's `PATH`.
    public var nodeExecutable: String
    /// From the start of a shutdown until SIGKILL. Below supervisord's `stopwaitsecs`
    /// (10 s for stack-app), so the entrypoint kills its servers before supervisord
    /// kills the entrypoint and orphans them.
    public var gracePeriod: Duration
    /// The mock-OAuth forwarder, when `STACK_FORWARD_MOCK_OAUTH_SERVER=true`.
    public var forwarder: TCPForwarder.Configuration?
    /// How long the API key set bootstrap waits for PostgreSQL to accept connections.
    public var databaseConnectDeadline: Duration

    public static let defaultWorkDirectory = "/var/tmp/stack-runtime"
    public static let defaultRotatedSecretsPath = "/run/stack-auth/rotated-secrets.env"

    public init(
        environment: [String: String],
        appDirectory: String = "/app",
        workDirectory: String? = nil,
        rotatedSecretsPath: String = EntrypointConfiguration.defaultRotatedSecretsPath,
        nodeExecutable: String = "node",
        gracePeriod: Duration = .seconds(8),
        forwarder: TCPForwarder.Configuration? = nil,
        databaseConnectDeadline: Duration = .seconds(60)
    ) {
        self.environment = environment
        self.appDirectory = appDirectory
        let configured = environment["STACK_RUNTIME_WORK_DIR"].flatMap { $0.isEmpty ? nil : $0 }
        self.workDirectory = workDirectory ?? configured ?? EntrypointConfiguration.defaultWorkDirectory
        self.rotatedSecretsPath = rotatedSecretsPath
        self.nodeExecutable = nodeExecutable
        self.gracePeriod = gracePeriod
        self.forwarder = forwarder
        self.databaseConnectDeadline = databaseConnectDeadline
    }

    /// The forwarder settings from the environment: on only for exactly `true`
    /// (`STACK_FORWARD_MOCK_OAUTH_SERVER`), ends overridable with
    /// `STACK_MOCK_OAUTH_FORWARD_LISTEN` / `STACK_MOCK_OAUTH_FORWARD_UPSTREAM` (`host:port`).
    public static func forwarder(from environment: [String: String]) throws -> TCPForwarder.Configuration? {
        guard environment["STACK_FORWARD_MOCK_OAUTH_SERVER"] == "true" else { return nil }
        var configuration = TCPForwarder.Configuration.mockOAuth
        if let listen = environment["STACK_MOCK_OAUTH_FORWARD_LISTEN"], !listen.isEmpty {
            (configuration.listenHost, configuration.listenPort) = try hostAndPort(listen, variable: "STACK_MOCK_OAUTH_FORWARD_LISTEN")
        }
        if let upstream = environment["STACK_MOCK_OAUTH_FORWARD_UPSTREAM"], !upstream.isEmpty {
            (configuration.upstreamHost, configuration.upstreamPort) = try hostAndPort(upstream, variable: "STACK_MOCK_OAUTH_FORWARD_UPSTREAM")
        }
        return configuration
    }

    static func hostAndPort(_ text: String, variable: String) throws -> (String, UInt16) {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]), port > 0 else {
            throw EntrypointError(.invalidVariable, "\(variable) must be host:port (e.g. 0.0.0.0:32202), got \(text)")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }
}
