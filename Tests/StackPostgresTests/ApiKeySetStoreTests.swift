import Logging
import StackCore
import StackPostgres
import Testing
import TestSupport

/// The internal project's "ApiKeySet" row as stack-entrypoint and rotate-secrets write it.
@Suite("ApiKeySetStore")
struct ApiKeySetStoreTests {
    private func store(_ database: PostgresTestDatabase, connectionString: String? = nil) async throws -> ApiKeySetStore {
        let connection = try await PostgresConnection.connect(
            to: PostgresConnectionString(connectionString ?? database.connectionString),
            options: PostgresConnectOptions(deadline: .seconds(10)), logger: quietLogger)
        return ApiKeySetStore(connection: connection)
    }

    private static let rowFilter = #""projectId" = 'internal' AND id = '3142e763-b230-44b5-8636-aa62f7489c26'"#

    /// §1.4-22: the bootstrap creates the row (internal, 3142e763-…) with the three keys,
    /// the fixed description and expiresAt 2099-12-31T23:59:59.
    @Test func upsertInsertsTheInternalRow() async throws {
        let database = try await PostgresServer.testDatabase()
        let store = try await store(database)
        let (pck, ssk, sak) = (Secret.generate(), Secret.generate(), Secret.generate())
        let write = try await store.upsertInternal(pck: pck, ssk: ssk, sak: sak)
        #expect(write.inserted)
        let record = try #require(try await store.readInternal())
        #expect(record.publishableClientKey == pck)
        #expect(record.secretServerKey == ssk)
        #expect(record.superSecretAdminKey == sak)
        #expect(record.description == "Internal API key set")
        #expect(record.expiresAt == "2099-12-31T23:59:59.000")
        #expect(record.manuallyRevokedAt == nil)
        #expect(record.createdAt == record.updatedAt)
        #expect(write.updatedAt == record.updatedAt)
        #expect(try await database.psql(#"SELECT count(*) FROM "ApiKeySet""#) == "1")
        #expect(try await database.psql(#"SELECT "publishableClientKey" FROM "ApiKeySet" WHERE "# + Self.rowFilter) == pck.unredacted)
    }

    /// §1.4-23: a second start with new keys updates the same row: no duplicate, keys
    /// replaced, updatedAt advanced, createdAt kept; description, expiresAt and
    /// manuallyRevokedAt untouched.
    @Test func upsertUpdatesOnlyKeysAndUpdatedAt() async throws {
        let database = try await PostgresServer.testDatabase()
        let store = try await store(database)
        _ = try await store.upsertInternal(pck: .generate(), ssk: .generate(), sak: .generate())
        // Age the row and change the columns the update must leave alone, so "kept" and
        // "advanced" are observable without waiting for the clock.
        try await database.psql(#"""
            UPDATE "ApiKeySet" SET "createdAt" = '2001-02-03 04:05:06.789', "updatedAt" = '2001-02-03 04:05:06.789',
                description = 'edited by an admin', "expiresAt" = '2030-01-01 00:00:00', "manuallyRevokedAt" = '2020-05-05 05:05:05'
            """#)
        let (pck, ssk, sak) = (Secret.generate(), Secret.generate(), Secret.generate())
        let write = try await store.upsertInternal(pck: pck, ssk: ssk, sak: sak)
        #expect(!write.inserted)
        let record = try #require(try await store.readInternal())
        #expect(record.publishableClientKey == pck)
        #expect(record.secretServerKey == ssk)
        #expect(record.superSecretAdminKey == sak)
        #expect(record.createdAt == "2001-02-03T04:05:06.789")
        #expect(record.updatedAt > "2001-02-03T04:05:06.789")
        #expect(record.description == "edited by an admin")
        #expect(record.expiresAt == "2030-01-01T00:00:00.000")
        #expect(record.manuallyRevokedAt == "2020-05-05T05:05:05.000")
        #expect(try await database.psql(#"SELECT count(*) FROM "ApiKeySet""#) == "1")
    }

    /// §2.4-11: rotation replaces the three keys of the existing row and advances
    /// updatedAt; nothing else changes.
    @Test func updateRotatesKeysOfTheExistingRow() async throws {
        let database = try await PostgresServer.testDatabase()
        let store = try await store(database)
        _ = try await store.upsertInternal(pck: .generate(), ssk: .generate(), sak: .generate())
        try await database.psql(#"UPDATE "ApiKeySet" SET "createdAt" = '2001-01-01', "updatedAt" = '2001-01-01'"#)
        // Another project's key set must not be touched.
        try await database.psql(#"""
            INSERT INTO "ApiKeySet" ("projectId", id, description, "expiresAt", "updatedAt", "publishableClientKey")
            VALUES ('other', '3142e763-b230-44b5-8636-aa62f7489c26', 'other project', '2099-01-01', '2001-01-01', 'other-pck')
            """#)
        let (pck, ssk, sak) = (Secret.generate(), Secret.generate(), Secret.generate())
        let write = try await store.updateInternal(pck: pck, ssk: ssk, sak: sak)
        #expect(!write.inserted)
        #expect(write.updatedAt > "2001-01-01T00:00:00.000")
        #expect("\(write)".hasPrefix("updated ApiKeySet internal/3142e763-b230-44b5-8636-aa62f7489c26"))
        let record = try #require(try await store.readInternal())
        #expect(record.publishableClientKey == pck)
        #expect(record.secretServerKey == ssk)
        #expect(record.superSecretAdminKey == sak)
        #expect(record.updatedAt == write.updatedAt)
        #expect(record.createdAt == "2001-01-01T00:00:00.000")
        #expect(record.description == "Internal API key set")
        #expect(record.expiresAt == "2099-12-31T23:59:59.000")
        #expect(try await database.psql(#"SELECT "publishableClientKey" || ' ' || "updatedAt" FROM "ApiKeySet" WHERE "projectId" = 'other'"#)
                == "other-pck 2001-01-01 00:00:00")
    }

    /// Rotating a row that does not exist is an error, not a silent no-op (upstream's
    /// UPDATE passed with zero rows), and nothing is written.
    @Test func updateOfMissingRowIsAnError() async throws {
        let database = try await PostgresServer.testDatabase()
        let store = try await store(database)
        let error = await #expect(throws: PostgresError.self) {
            _ = try await store.updateInternal(pck: .generate(), ssk: .generate(), sak: .generate())
        }
        #expect(error?.code == .rowMissing)
        #expect(error?.description.contains("3142e763-b230-44b5-8636-aa62f7489c26") == true)
        #expect(try await database.psql(#"SELECT count(*) FROM "ApiKeySet""#) == "0")
        #expect(try await store.readInternal() == nil)
    }

    /// Keys are compared case-sensitively by the backend; uppercase hex is stored as given
    /// (§2.4-4 accepts it).
    @Test func uppercaseHexKeysAreStoredVerbatim() async throws {
        let database = try await PostgresServer.testDatabase()
        let store = try await store(database)
        let pck = try Secret(validating: String(repeating: "AB", count: 32), name: "PCK")
        _ = try await store.upsertInternal(pck: pck, ssk: .generate(), sak: .generate())
        #expect(try await database.psql(#"SELECT "publishableClientKey" FROM "ApiKeySet""#) == pck.unredacted)
    }

    /// A key already used by another key set violates the unique index: the error says so
    /// and does not quote the key. (§5.4-34)
    @Test func duplicateKeyErrorDoesNotRevealTheKey() async throws {
        let database = try await PostgresServer.testDatabase()
        let store = try await store(database)
        let pck = Secret.generate()
        try await database.psql(#"""
            INSERT INTO "ApiKeySet" ("projectId", id, description, "expiresAt", "updatedAt", "publishableClientKey")
            VALUES ('other', gen_random_uuid(), 'other', '2099-01-01', now(), '\#(pck.unredacted)')
            """#)
        let error = await #expect(throws: PostgresError.self) {
            _ = try await store.upsertInternal(pck: pck, ssk: .generate(), sak: .generate())
        }
        #expect(error?.sqlState == "23505")
        #expect(error?.action == "upsert internal ApiKeySet")
        #expect(error.map { !"\($0)".contains(pck.unredacted) } == true)
    }

    /// Timestamps are UTC like Prisma's, even when the session's TimeZone is not.
    @Test func timestampsAreUTCWhateverTheSessionTimeZone() async throws {
        let database = try await PostgresServer.testDatabase()
        let kiritimati = database.server.connectionString(database: database.name) + "&options=-c%20TimeZone%3DPacific/Kiritimati"
        let store = try await store(database, connectionString: kiritimati)
        _ = try await store.upsertInternal(pck: .generate(), ssk: .generate(), sak: .generate())
        #expect(try await database.psql(#"""
            SELECT abs(extract(epoch FROM "createdAt" - (now() AT TIME ZONE 'UTC'))) < 300 FROM "ApiKeySet"
            """#) == "t")
    }
}
