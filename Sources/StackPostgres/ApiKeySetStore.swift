import StackCore

/// The internal project's API key set (table `"ApiKeySet"` of Stack Auth's Prisma schema):
/// the one row (`"projectId"='internal'`, `id=3142e763-…`) whose three keys the emulator
/// seeds at start (stack-entrypoint) and replaces on rotation (rotate-secrets).
///
/// Keys are `Secret`s, so they are hex64 before any statement can be built, and they are
/// bound as parameters, never spliced into SQL.
public struct ApiKeySetStore {
    public static let internalProjectId = "internal"
    public static let internalKeySetId = "3142e763-b230-44b5-8636-aa62f7489c26"
    public static let internalDescription = "Internal API key set"
    /// Written on insert only, as upstream's bootstrap did.
    public static let internalExpiresAt = "2099-12-31T23:59:59Z"

    /// What a write did, for the caller's log line.
    public struct Write: Sendable, Equatable, CustomStringConvertible {
        /// `true` when the row was created, `false` when an existing row was updated.
        public let inserted: Bool
        /// The row's new `"updatedAt"`, `YYYY-MM-DDTHH:MM:SS.mmm` (UTC).
        public let updatedAt: String

        public var description: String {
            "\(inserted ? "inserted" : "updated") ApiKeySet \(ApiKeySetStore.internalProjectId)/\(ApiKeySetStore.internalKeySetId) (updatedAt \(updatedAt))"
        }
    }

    /// The row as stored; timestamps `YYYY-MM-DDTHH:MM:SS.mmm`, as written (UTC).
    public struct Record: Sendable, Equatable {
        public let description: String
        public let expiresAt: String?
        public let manuallyRevokedAt: String?
        public let createdAt: String
        public let updatedAt: String
        public let publishableClientKey: Secret
        public let secretServerKey: Secret
        public let superSecretAdminKey: Secret
    }

    private let connection: PostgresConnection

    public init(connection: PostgresConnection) {
        self.connection = connection
    }

    /// stack-entrypoint's bootstrap: inserts the row, or, when it exists, replaces only
    /// the three keys and `"updatedAt"` (description, `"expiresAt"`, `"createdAt"` and
    /// `"manuallyRevokedAt"` are left as they are).
    ///
    /// Timestamps are `NOW()` in UTC: the columns are `timestamp without time zone`
    /// holding UTC, as Prisma writes them, whatever the server's `TimeZone`.
    public func upsertInternal(
        pck: Secret, ssk: Secret, sak: Secret,
        isolation: isolated (any Actor)? = #isolation
    ) async throws(PostgresError) -> Write {
        let result = try await connection.query("""
            INSERT INTO "ApiKeySet" ("projectId", id, description, "expiresAt", "createdAt", "updatedAt",
                                     "publishableClientKey", "secretServerKey", "superSecretAdminKey")
            VALUES ($1, $2, $3, $4, NOW() AT TIME ZONE 'UTC', NOW() AT TIME ZONE 'UTC', $5, $6, $7)
            ON CONFLICT ("projectId", id) DO UPDATE SET
                "publishableClientKey" = EXCLUDED."publishableClientKey",
                "secretServerKey" = EXCLUDED."secretServerKey",
                "superSecretAdminKey" = EXCLUDED."superSecretAdminKey",
                "updatedAt" = NOW() AT TIME ZONE 'UTC'
            RETURNING (xmax = 0) AS inserted, to_char("updatedAt", 'YYYY-MM-DD"T"HH24:MI:SS.MS') AS "updatedAt"
            """,
            [.text(Self.internalProjectId), .text(Self.internalKeySetId), .text(Self.internalDescription),
             .text(Self.internalExpiresAt), .secret(pck), .secret(ssk), .secret(sak)],
            action: "upsert internal ApiKeySet")
        // xmax = 0 holds for a freshly inserted row version and not for one written by
        // ON CONFLICT DO UPDATE: the usual way to tell the two apart in one statement.
        return try Self.write(from: result, action: "upsert internal ApiKeySet")
    }

    /// rotate-secrets: replaces the three keys and `"updatedAt"` of the existing row, in
    /// a transaction. A missing row is an error (`rowMissing`), not a silent no-op: the
    /// keys would otherwise be rotated everywhere except where the backend checks them.
    public func updateInternal(
        pck: Secret, ssk: Secret, sak: Secret,
        isolation: isolated (any Actor)? = #isolation
    ) async throws -> Write {
        let action = "update internal ApiKeySet"
        return try await connection.withTransaction { transaction in
            let result = try await transaction.query("""
                UPDATE "ApiKeySet" SET
                    "publishableClientKey" = $3,
                    "secretServerKey" = $4,
                    "superSecretAdminKey" = $5,
                    "updatedAt" = NOW() AT TIME ZONE 'UTC'
                WHERE "projectId" = $1 AND id = $2
                RETURNING false AS inserted, to_char("updatedAt", 'YYYY-MM-DD"T"HH24:MI:SS.MS') AS "updatedAt"
                """,
                [.text(Self.internalProjectId), .text(Self.internalKeySetId), .secret(pck), .secret(ssk), .secret(sak)],
                action: action)
            if result.affectedRows == 0 {
                throw PostgresError(
                    .rowMissing, action: action,
                    "no row with \"projectId\" '\(Self.internalProjectId)' and id '\(Self.internalKeySetId)' in \"ApiKeySet\"; nothing was changed (the container's start-up bootstrap creates it: check that it ran against this database)")
            }
            return try Self.write(from: result, action: action)
        }
    }

    /// The row, or `nil` when it does not exist. Throws `unexpectedResult` when a key
    /// column does not hold a 64-character hex value.
    public func readInternal(isolation: isolated (any Actor)? = #isolation) async throws(PostgresError) -> Record? {
        let action = "read internal ApiKeySet"
        let result = try await connection.query("""
            SELECT description,
                   to_char("expiresAt", 'YYYY-MM-DD"T"HH24:MI:SS.MS') AS "expiresAt",
                   to_char("manuallyRevokedAt", 'YYYY-MM-DD"T"HH24:MI:SS.MS') AS "manuallyRevokedAt",
                   to_char("createdAt", 'YYYY-MM-DD"T"HH24:MI:SS.MS') AS "createdAt",
                   to_char("updatedAt", 'YYYY-MM-DD"T"HH24:MI:SS.MS') AS "updatedAt",
                   "publishableClientKey", "secretServerKey", "superSecretAdminKey"
            FROM "ApiKeySet" WHERE "projectId" = $1 AND id = $2
            """,
            [.text(Self.internalProjectId), .text(Self.internalKeySetId)], action: action)
        guard let row = result.rows.first else { return nil }
        func required(_ column: String) throws(PostgresError) -> String {
            guard let value = try row.value(column) else {
                throw PostgresError(.unexpectedResult, action: action, "column \"\(column)\" is NULL")
            }
            return value
        }
        func key(_ column: String) throws(PostgresError) -> Secret {
            do {
                return try Secret(validating: try required(column), name: "column \"\(column)\"")
            } catch let error as PostgresError {
                throw error
            } catch {
                throw PostgresError(.unexpectedResult, action: action, "\(error)")
            }
        }
        return Record(
            description: try required("description"),
            expiresAt: try row.value("expiresAt"),
            manuallyRevokedAt: try row.value("manuallyRevokedAt"),
            createdAt: try required("createdAt"),
            updatedAt: try required("updatedAt"),
            publishableClientKey: try key("publishableClientKey"),
            secretServerKey: try key("secretServerKey"),
            superSecretAdminKey: try key("superSecretAdminKey"))
    }

    private static func write(from result: PostgresResult, action: String) throws(PostgresError) -> Write {
        guard result.rows.count == 1, let row = result.rows.first,
              let inserted = try row.value("inserted"), let updatedAt = try row.value("updatedAt") else {
            throw PostgresError(.unexpectedResult, action: action,
                                "expected one row back, got \(result.rows.count)")
        }
        return Write(inserted: inserted == "t", updatedAt: updatedAt)
    }
}

@available(*, unavailable, message: "an ApiKeySetStore uses a PostgresConnection, which belongs to one task or actor")
extension ApiKeySetStore: Sendable {}
