import StackCore
import Testing
import TestSupport

/// The emulator's internal API key set bootstrap, against a real PostgreSQL.
@Suite struct EntrypointDatabaseTests {
    static let keyNames = ["STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY", "STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY",
                           "STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY"]

    func emulatorEnvironment(database: String) -> [String: String] {
        var env = ["NEXT_PUBLIC_STACK_IS_LOCAL_EMULATOR": "true", "STACK_DATABASE_CONNECTION_STRING": database,
                   "STACK_SKIP_MIGRATIONS": "true", "STACK_SKIP_SEED_SCRIPT": "true"]
        for name in Self.keyNames { env[name] = Secret.generate().unredacted }
        return env
    }

    func row(_ database: PostgresTestDatabase) async throws -> [String] {
        let text = try await database.psql("""
            SELECT "publishableClientKey", "secretServerKey", "superSecretAdminKey", "createdAt", "updatedAt", "expiresAt", count(*) OVER ()
            FROM "ApiKeySet" WHERE "projectId" = 'internal' AND id = '3142e763-b230-44b5-8636-aa62f7489c26'
            """)
        return text.split(separator: "\n").first.map { $0.split(separator: "|").map(String.init) } ?? []
    }

    /// §1.4-22, §1.4-23: insert, then the same row updated on the next start (createdAt kept).
    @Test func bootstrapUpsertsTheInternalKeySetOnEveryStart() async throws {
        let database = try await PostgresServer.testDatabase()
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        let first = emulatorEnvironment(database: database.connectionString)
        let (status, log) = try await sandbox.run(first, subcommand: ["prepare"])
        #expect(status == .exited(0), "\(log)")
        #expect(log.contains("Bootstrapping internal API key set (emulator runtime)..."))
        let inserted = try await row(database)
        #expect(Array(inserted.prefix(3)) == Self.keyNames.map { first[$0]! })
        #expect(inserted[5].hasPrefix("2099-12-31 23:59:59"))
        #expect(inserted[6] == "1")

        let second = emulatorEnvironment(database: database.connectionString)
        #expect(try await sandbox.run(second, subcommand: ["prepare"]).0 == .exited(0))
        let updated = try await row(database)
        #expect(Array(updated.prefix(3)) == Self.keyNames.map { second[$0]! })
        #expect(updated[3] == inserted[3], "createdAt kept")
        #expect(updated[4] > inserted[4], "updatedAt advanced")
        #expect(updated[6] == "1", "no duplicate row")
        for name in Self.keyNames {
            #expect(!log.contains(first[name]!), "no key value in the log")
        }
    }

    /// §1.4-21: a key that is not hex stops start-up before any SQL.
    @Test func nonHexKeyFailsBeforeAnySQL() async throws {
        let database = try await PostgresServer.testDatabase()
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        var env = emulatorEnvironment(database: database.connectionString)
        env["STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY"] = "'); DROP TABLE \"ApiKeySet\"; --"
        let (status, log) = try await sandbox.run(env)
        #expect(status == .exited(1))
        #expect(log.contains("STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY is not a 64-character hex string"))
        #expect(!log.contains("Bootstrapping"))
        #expect(try await row(database).isEmpty)
        #expect(try await database.psql("SELECT count(*) FROM \"ApiKeySet\"") == "0", "the table survives")
    }

    /// §1.4-4, §1.4-5: emulator mode without a key stops start-up naming it.
    @Test func emulatorModeWithoutAKeyExitsNamingIt() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        var env = emulatorEnvironment(database: "")
        env["STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY"] = ""
        let (status, log) = try await sandbox.run(env)
        #expect(status == .exited(1))
        #expect(log.contains("STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY must be set in local-emulator mode"))
    }

    /// §1.4-25: the database unreachable → bounded wait, non-zero exit, servers not started.
    @Test func unreachableDatabaseFailsStartUpAfterABoundedWait() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        let env = emulatorEnvironment(database: "postgresql://postgres@/stack?host=\(sandbox.directory.file("no-socket"))")
        let process = try sandbox.start(env, subcommand: [], wrapper: [])
        defer { process.kill() }
        let status = try await process.waitForExit(timeout: .seconds(120))
        #expect(status == .exited(1))
        #expect(process.log.contains("cannot bootstrap the internal API key set"))
        #expect(!process.log.contains("Starting backend"))
    }

    /// §1.4-24: no connection string (or not the emulator) → no bootstrap.
    @Test func bootstrapIsSkippedWithoutAConnectionString() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        let (status, log) = try await sandbox.run(emulatorEnvironment(database: ""), subcommand: ["prepare"])
        #expect(status == .exited(0))
        #expect(!log.contains("Bootstrapping"))
    }
}
