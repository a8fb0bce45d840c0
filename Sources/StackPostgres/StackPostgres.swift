// StackPostgres: a small PostgreSQL client over libpq for the container-side executables.
//
// - PostgresConnection: connect with a bounded retry, bound-parameter statements only
//   (PostgresQuery is a string literal; values are PostgresParameter), transactions,
//   server notices to a Logger.
// - ApiKeySetStore: the internal project's "ApiKeySet" row (upsert at start, update on
//   rotation, read for verification).
// - PostgresError: the one error type, secrets and passwords redacted.
