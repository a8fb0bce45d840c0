import StackCore
import StackEntrypoint
import Testing

@Suite struct ServerEnvironmentTests {
    let hex = { (c: Character) in String(repeating: c, count: 64) }

    func derive(_ env: [String: String], overlay: EnvFile? = nil) throws -> ServerEnvironment {
        try ServerEnvironment.derive(container: env, overlay: overlay, randomKey: { "random-\(Int.random(in: 0..<1_000_000))" })
    }

    /// §1.4-1, §1.4-2
    @Test func overlayIsExportedAndOverridesTheContainer() throws {
        let overlay = try EnvFile.parse(Array("X=1\nCRON_SECRET=new\n".utf8), source: "overlay")
        let env = try derive(["CRON_SECRET": "old"], overlay: overlay)
        #expect(env.variables["X"] == "1")
        #expect(env.variables["CRON_SECRET"] == "new")
    }

    /// §1.4-4, §1.4-5
    @Test(arguments: ServerEnvironment.seedKeyVariablesForTests)
    func emulatorModeRequiresEveryKey(missing: String) throws {
        var env = ["NEXT_PUBLIC_STACK_IS_LOCAL_EMULATOR": "true"]
        for name in ServerEnvironment.seedKeyVariablesForTests where name != missing { env[name] = hex("a") }
        let error = try #require(throws: EntrypointError.self) { try derive(env) }
        #expect(error.message.contains(missing))
    }

    /// §1.4-6, §1.4-7
    @Test func nonEmulatorModeFillsOnlyMissingKeys() throws {
        let env = try derive([ServerEnvironment.publishableKeyVariable: "given"])
        #expect(env.variables[ServerEnvironment.publishableKeyVariable] == "given")
        #expect(env.variables[ServerEnvironment.secretServerKeyVariable]?.hasPrefix("random-") == true)
        #expect(env.variables[ServerEnvironment.superSecretAdminKeyVariable]?.hasPrefix("random-") == true)
    }

    /// §1.4-8, §1.4-9, §1.4-10, §1.4-15
    @Test func derivedVariablesFollowTheKeys() throws {
        let env = try derive([
            ServerEnvironment.publishableKeyVariable: "pck", ServerEnvironment.secretServerKeyVariable: "ssk",
            ServerEnvironment.superSecretAdminKeyVariable: "sak", "NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY": "caller",
            "NEXT_PUBLIC_STACK_PROJECT_ID": "other",
        ])
        #expect(env.variables["NEXT_PUBLIC_STACK_PROJECT_ID"] == "internal")
        #expect(env.variables["NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY"] == "pck")
        #expect(env.variables["STACK_SECRET_SERVER_KEY"] == "ssk")
        #expect(env.variables["STACK_SUPER_SECRET_ADMIN_KEY"] == "sak")
        #expect(env.variables["USE_INLINE_ENV_VARS"] == "true")
    }

    /// §1.4-11, §1.4-12, §1.4-13
    @Test func portsFollowThePrefixUnlessGiven() throws {
        let defaults = try derive([:])
        #expect(defaults.variables["NEXT_PUBLIC_STACK_PORT_PREFIX"] == "81")
        #expect((defaults.backendPort, defaults.dashboardPort) == ("8102", "8101"))
        let custom = try derive(["NEXT_PUBLIC_STACK_PORT_PREFIX": "91"])
        #expect(custom.variables["NEXT_PUBLIC_SERVER_STACK_API_URL"] == "http://localhost:9102")
        #expect(custom.variables["NEXT_PUBLIC_SERVER_STACK_DASHBOARD_URL"] == "http://localhost:9101")
        let explicit = try derive(["NEXT_PUBLIC_STACK_PORT_PREFIX": "91", "BACKEND_PORT": "7000", "DASHBOARD_PORT": "7001"])
        #expect((explicit.backendPort, explicit.dashboardPort) == ("7000", "7001"))
        #expect(explicit.forServer(port: explicit.backendPort)["PORT"] == "7000")
        #expect(explicit.forServer(port: explicit.backendPort)["HOSTNAME"] == "0.0.0.0")
    }

    /// §1.4-14, §1.4-16
    @Test func browserUrlsAndSvixFallback() throws {
        let env = try derive(["NEXT_PUBLIC_STACK_API_URL": "http://api", "NEXT_PUBLIC_STACK_DASHBOARD_URL": "http://dash",
                              "STACK_SVIX_SERVER_URL": "http://svix"])
        #expect(env.variables["NEXT_PUBLIC_BROWSER_STACK_API_URL"] == "http://api")
        #expect(env.variables["NEXT_PUBLIC_BROWSER_STACK_DASHBOARD_URL"] == "http://dash")
        #expect(env.variables["NEXT_PUBLIC_STACK_SVIX_SERVER_URL"] == "http://svix")
        let kept = try derive(["NEXT_PUBLIC_STACK_SVIX_SERVER_URL": "http://mine", "STACK_SVIX_SERVER_URL": "http://svix"])
        #expect(kept.variables["NEXT_PUBLIC_STACK_SVIX_SERVER_URL"] == "http://mine")
    }

    /// §1.4-17, §1.4-19
    @Test func skipSwitches() throws {
        #expect(try derive(["STACK_SKIP_MIGRATIONS": "true"]).isSkipped(skip: "STACK_SKIP_MIGRATIONS", run: "STACK_RUN_MIGRATIONS"))
        #expect(try derive(["STACK_RUN_MIGRATIONS": "false"]).isSkipped(skip: "STACK_SKIP_MIGRATIONS", run: "STACK_RUN_MIGRATIONS"))
        #expect(try !derive(["STACK_RUN_MIGRATIONS": "true"]).isSkipped(skip: "STACK_SKIP_MIGRATIONS", run: "STACK_RUN_MIGRATIONS"))
    }

    /// §1.4-21: keys are validated before any SQL.
    @Test func bootstrapKeysMustBeHex64() throws {
        var base = ["NEXT_PUBLIC_STACK_IS_LOCAL_EMULATOR": "true"]
        for name in ServerEnvironment.seedKeyVariablesForTests { base[name] = hex("b") }
        _ = try derive(base).bootstrapKeys()
        base[ServerEnvironment.publishableKeyVariable] = "abc'; DROP TABLE \"ApiKeySet\"; --"
        let error = try #require(throws: EntrypointError.self) { try derive(base).bootstrapKeys() }
        #expect(error.message.contains(ServerEnvironment.publishableKeyVariable))
        #expect(!error.message.contains("DROP"))
    }
}

extension ServerEnvironment {
    static var seedKeyVariablesForTests: [String] { [publishableKeyVariable, secretServerKeyVariable, superSecretAdminKeyVariable] }
}
