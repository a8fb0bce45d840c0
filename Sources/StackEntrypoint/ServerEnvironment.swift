import StackCore

/// The environment the two Node servers get, derived from the container environment
/// and the rotated-secrets overlay exactly as the original entrypoint did (steps 1, 3
/// and 4 of its start-up), as a pure function so every rule is unit-testable.
public struct ServerEnvironment: Sendable, Equatable {
    /// The complete environment shared by both servers (PORT/HOSTNAME are added per server).
    public var variables: [String: String]
    public var backendPort: String
    public var dashboardPort: String
    /// `true` when `NEXT_PUBLIC_STACK_IS_LOCAL_EMULATOR=true`.
    public var isLocalEmulator: Bool

    public static let publishableKeyVariable = InternalSecrets.Name.publishableClientKey.variable
    public static let secretServerKeyVariable = InternalSecrets.Name.secretServerKey.variable
    public static let superSecretAdminKeyVariable = InternalSecrets.Name.superSecretAdminKey.variable
    static let seedKeyVariables = [publishableKeyVariable, secretServerKeyVariable, superSecretAdminKeyVariable]

    /// - Parameters:
    ///   - container: the entrypoint's own environment.
    ///   - overlay: `rotated-secrets.env`, whose assignments override `container`.
    ///   - randomKey: makes a key for a non-emulator start that was given none
    ///     (32 CSPRNG bytes, base64, like the image always did).
    public static func derive(
        container: [String: String],
        overlay: EnvFile? = nil,
        randomKey: () -> String
    ) throws -> ServerEnvironment {
        var env = container
        for entry in overlay?.entries ?? [] { env[entry.key] = entry.value }

        func nonEmpty(_ name: String) -> String? {
            guard let value = env[name], !value.isEmpty else { return nil }
            return value
        }

        let isLocalEmulator = env["NEXT_PUBLIC_STACK_IS_LOCAL_EMULATOR"] == "true"
        for name in seedKeyVariables where nonEmpty(name) == nil {
            if isLocalEmulator {
                throw EntrypointError(.missingVariable, "\(name) must be set in local-emulator mode (the QEMU VM supplies it)")
            }
            env[name] = randomKey()
        }

        env["NEXT_PUBLIC_STACK_PROJECT_ID"] = "internal"
        env["NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY"] = env[publishableKeyVariable]
        if let ssk = nonEmpty(secretServerKeyVariable) { env["STACK_SECRET_SERVER_KEY"] = ssk }
        if let sak = nonEmpty(superSecretAdminKeyVariable) { env["STACK_SUPER_SECRET_ADMIN_KEY"] = sak }
        env["NEXT_PUBLIC_BROWSER_STACK_DASHBOARD_URL"] = env["NEXT_PUBLIC_STACK_DASHBOARD_URL"] ?? ""
        let prefix = nonEmpty("NEXT_PUBLIC_STACK_PORT_PREFIX") ?? "81"
        env["NEXT_PUBLIC_STACK_PORT_PREFIX"] = prefix
        env["NEXT_PUBLIC_SERVER_STACK_DASHBOARD_URL"] = "http://localhost:\(prefix)01"
        env["NEXT_PUBLIC_BROWSER_STACK_API_URL"] = env["NEXT_PUBLIC_STACK_API_URL"] ?? ""
        env["NEXT_PUBLIC_SERVER_STACK_API_URL"] = "http://localhost:\(prefix)02"
        let backendPort = nonEmpty("BACKEND_PORT") ?? "\(prefix)02"
        let dashboardPort = nonEmpty("DASHBOARD_PORT") ?? "\(prefix)01"
        env["BACKEND_PORT"] = backendPort
        env["DASHBOARD_PORT"] = dashboardPort
        env["USE_INLINE_ENV_VARS"] = "true"
        if nonEmpty("NEXT_PUBLIC_STACK_SVIX_SERVER_URL") == nil {
            env["NEXT_PUBLIC_STACK_SVIX_SERVER_URL"] = env["STACK_SVIX_SERVER_URL"] ?? ""
        }
        return ServerEnvironment(variables: env, backendPort: backendPort, dashboardPort: dashboardPort,
                                 isLocalEmulator: isLocalEmulator)
    }

    /// The three internal keys for the emulator's API key set bootstrap, validated
    /// before any SQL: each must be hex64 (the VM generates `openssl rand -hex 32`
    /// values and the build placeholders are hex64 too, so one rule serves the
    /// entrypoint and rotate-secrets alike).
    public func bootstrapKeys() throws -> (pck: Secret, ssk: Secret, sak: Secret) {
        func key(_ name: String) throws -> Secret {
            let value = variables[name] ?? ""
            if value.isEmpty {
                throw EntrypointError(.missingVariable, "\(name) is not set; refusing to bootstrap the internal API key set")
            }
            do {
                return try Secret(validating: value, name: name)
            } catch {
                throw EntrypointError(.invalidVariable, "\(name) is not a 64-character hex string; refusing to bootstrap the internal API key set")
            }
        }
        return (try key(Self.publishableKeyVariable), try key(Self.secretServerKeyVariable), try key(Self.superSecretAdminKeyVariable))
    }

    /// Whether a step is switched off by `SKIP=true` or `RUN=false`.
    public func isSkipped(skip: String, run: String) -> Bool {
        variables[skip] == "true" || variables[run] == "false"
    }

    /// The environment of one server: the shared one plus `PORT` and `HOSTNAME=0.0.0.0`.
    public func forServer(port: String) -> [String: String] {
        var env = variables
        env["PORT"] = port
        env["HOSTNAME"] = "0.0.0.0"
        return env
    }
}
