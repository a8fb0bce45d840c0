import Synchronization

/// A fresh database for one test on the test process's shared PostgreSQL server, created
/// from a template that already holds Stack Auth's `"ApiKeySet"` table (cheap: a copy of
/// a tiny template instead of an initdb per test).
public struct PostgresTestDatabase: Sendable {
    public let server: PostgresServer
    public let name: String

    /// Superuser connection string (unix socket, no password).
    public var connectionString: String { server.connectionString(database: name) }

    /// A connection string for the password-authenticated role `PostgresTestDatabase.passwordRole`.
    public func connectionString(password: String) -> String {
        server.connectionString(database: name, user: PostgresTestDatabase.passwordRole, password: password)
    }

    /// A role that must authenticate with scram-sha-256 (for password-handling tests).
    public static let passwordRole = "stack_app"
    public static let passwordRolePassword = "Pw0rd-not-for-logs-7f3a9c"

    /// Runs `sql` with psql as the superuser in this database (see `PostgresServer.psql`).
    @discardableResult
    public func psql(_ sql: String) async throws -> String {
        try await server.psql(sql, database: name)
    }
}

extension PostgresServer {
    /// A new database for the calling test on the shared server (started on first use,
    /// stopped and deleted when the test process exits).
    public static func testDatabase() async throws -> PostgresTestDatabase {
        let server = try await PostgresSharedServer.instance.server()
        let name = "test_\(PostgresSharedServer.nextDatabaseNumber())"
        try await server.psql("CREATE DATABASE \"\(name)\" TEMPLATE \(PostgresSharedServer.templateDatabase)")
        return PostgresTestDatabase(server: server, name: name)
    }
}

/// The one shared server of a test process, started lazily exactly once even when many
/// tests ask at the same time (the first caller's start task is shared by all).
actor PostgresSharedServer {
    static let instance = PostgresSharedServer()
    static let templateDatabase = "stack_template"
    private static let counter = Mutex(0)

    static func nextDatabaseNumber() -> Int {
        counter.withLock { value in
            value += 1
            return value
        }
    }

    private var starting: Task<PostgresServer, any Error>?

    func server() async throws -> PostgresServer {
        if let starting { return try await starting.value }
        let task = Task { try await PostgresSharedServer.launch() }
        starting = task
        return try await task.value
    }

    private static func launch() async throws -> PostgresServer {
        let server = try await PostgresServer.create()
        do {
            try await server.start()
            try await server.psql("""
                CREATE ROLE \(PostgresTestDatabase.passwordRole) LOGIN PASSWORD '\(PostgresTestDatabase.passwordRolePassword)';
                CREATE DATABASE \(templateDatabase);
                """)
            try await server.psql(apiKeySetSchema, database: templateDatabase)
        } catch {
            await server.remove()
            throw error
        }
        return server
    }

    /// Stack Auth's `"ApiKeySet"` as its Prisma migrations create it (keys unique).
    static let apiKeySetSchema = """
        CREATE TABLE "ApiKeySet" (
            "projectId" TEXT NOT NULL,
            "id" UUID NOT NULL,
            "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
            "updatedAt" TIMESTAMP(3) NOT NULL,
            "description" TEXT NOT NULL,
            "expiresAt" TIMESTAMP(3) NOT NULL,
            "manuallyRevokedAt" TIMESTAMP(3),
            "publishableClientKey" TEXT,
            "secretServerKey" TEXT,
            "superSecretAdminKey" TEXT,
            CONSTRAINT "ApiKeySet_pkey" PRIMARY KEY ("projectId", "id")
        );
        CREATE UNIQUE INDEX "ApiKeySet_publishableClientKey_key" ON "ApiKeySet"("publishableClientKey");
        CREATE UNIQUE INDEX "ApiKeySet_secretServerKey_key" ON "ApiKeySet"("secretServerKey");
        CREATE UNIQUE INDEX "ApiKeySet_superSecretAdminKey_key" ON "ApiKeySet"("superSecretAdminKey");
        GRANT ALL ON "ApiKeySet" TO \(PostgresTestDatabase.passwordRole);
        """
}
