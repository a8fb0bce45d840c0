/// How `PostgresConnection.connect` waits for the server and how long statements may run.
public struct PostgresConnectOptions: Sendable {
    /// Total time to wait for the server to accept a connection (it may still be starting:
    /// socket missing, connection refused, "the database system is starting up").
    public var deadline: Duration
    /// First pause between attempts; doubles up to `maximumBackoff`.
    public var initialBackoff: Duration
    public var maximumBackoff: Duration
    /// Server-side `statement_timeout` for the session, so no statement (including one
    /// waiting for a lock) runs unbounded; `nil` keeps the server's setting.
    public var statementTimeout: Duration?
    /// `fallback_application_name`: shown in `pg_stat_activity` unless the connection
    /// string names one.
    public var applicationName: String

    public init(
        deadline: Duration = .seconds(30),
        initialBackoff: Duration = .milliseconds(10),
        maximumBackoff: Duration = .milliseconds(500),
        statementTimeout: Duration? = .seconds(60),
        applicationName: String = "stack-emulator"
    ) {
        self.deadline = deadline
        self.initialBackoff = initialBackoff
        self.maximumBackoff = maximumBackoff
        self.statementTimeout = statementTimeout
        self.applicationName = applicationName
    }
}
