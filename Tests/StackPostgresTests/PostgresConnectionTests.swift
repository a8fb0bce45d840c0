import Logging
import StackCore
import StackPostgres
import Testing
import TestSupport

/// Statements, parameters, results, transactions and notices against a real PostgreSQL 15.
@Suite("PostgresConnection")
struct PostgresConnectionTests {
    private func connect(_ database: PostgresTestDatabase, logger: Logger = quietLogger,
                         options: PostgresConnectOptions = PostgresConnectOptions(deadline: .seconds(10))) async throws -> PostgresConnection {
        try await PostgresConnection.connect(to: PostgresConnectionString(database.connectionString), options: options, logger: logger)
    }

    private struct Planned: Error, Equatable {}

    /// §5.4-5: values are bound, never spliced: quotes, backslashes and SQL fragments are
    /// stored verbatim and the statement they try to smuggle in never runs.
    @Test func hostileTextIsStoredVerbatimAndNothingElseRuns() async throws {
        let database = try await PostgresServer.testDatabase()
        try await database.psql(#"CREATE TABLE notes (id int PRIMARY KEY, body text)"#)
        let connection = try await connect(database)
        let hostile = [
            "it's",
            #"back\slash \\ and \'"#,
            #"'; DROP TABLE "ApiKeySet"; --"#,
            #"x'); DELETE FROM notes; SELECT ('"#,
            "$1 $2 $$ dollar $$",
            "\"double\" `back` ;",
            "line\nbreak\ttab\r",
            "ünïcödé ✓ 🐘",
            "",
        ]
        for (index, text) in hostile.enumerated() {
            let result = try await connection.query("INSERT INTO notes (id, body) VALUES ($1, $2)", [.text(String(index)), .text(text)])
            #expect(result.affectedRows == 1)
        }
        let stored = try await connection.query("SELECT body FROM notes ORDER BY id")
        #expect(stored.rows.map { $0[0] } == hostile.map { Optional($0) })
        // The table the payload names still exists, and every row is still there.
        #expect(try await database.psql(#"SELECT count(*) FROM "ApiKeySet""#) == "0")
        #expect(try await database.psql("SELECT count(*) FROM notes") == "\(hostile.count)")
        // Round trip through SELECT as well (the parameter is a value, not SQL).
        let echoed = try await connection.query("SELECT $1::text AS echoed", [.text(hostile[2])])
        #expect(try echoed.rows.first?.value("echoed") == hostile[2])
    }

    /// A NUL byte would silently truncate a C string; it is refused before sending.
    @Test func parameterWithNulByteIsRejected() async throws {
        let database = try await PostgresServer.testDatabase()
        let connection = try await connect(database)
        let error = await #expect(throws: PostgresError.self) {
            _ = try await connection.query("SELECT $1::text", [.text("abc\u{0}def")])
        }
        #expect(error?.code == .invalidParameter)
        #expect(error?.message.contains("$1") == true)
    }

    @Test func nullAndEmptyStringStayDistinct() async throws {
        let database = try await PostgresServer.testDatabase()
        let connection = try await connect(database)
        let result = try await connection.query("SELECT $1::text AS a, $2::text AS b, $1::text IS NULL AS a_null", [nil, ""])
        let row = try #require(result.rows.first)
        #expect(try row.value("a") == nil)
        #expect(try row.value("b") == "")
        #expect(try row.value("a_null") == "t")
        #expect(result.columns == ["a", "b", "a_null"])
    }

    @Test func affectedRowsAndCommandTagAreReported() async throws {
        let database = try await PostgresServer.testDatabase()
        try await database.psql("CREATE TABLE counters (id int PRIMARY KEY, n int); INSERT INTO counters VALUES (1, 0), (2, 0), (3, 0)")
        let connection = try await connect(database)
        let update = try await connection.query("UPDATE counters SET n = n + 1 WHERE id >= $1", ["2"])
        #expect(update.affectedRows == 2)
        #expect(update.commandTag == "UPDATE 2")
        let none = try await connection.query("UPDATE counters SET n = 0 WHERE id = $1", ["99"])
        #expect(none.affectedRows == 0)
        #expect(try await database.psql("SELECT string_agg(n::text, ',' ORDER BY id) FROM counters") == "0,1,1")
    }

    @Test func serverErrorCarriesSQLStateAndAction() async throws {
        let database = try await PostgresServer.testDatabase()
        let connection = try await connect(database)
        let error = await #expect(throws: PostgresError.self) {
            _ = try await connection.query("SELECT 1 / $1::int", ["0"], action: "divide for the test")
        }
        #expect(error?.code == .queryFailed)
        #expect(error?.sqlState == "22012")
        #expect(error?.message == "division by zero")
        #expect(error?.description == "divide for the test: division by zero (SQLSTATE 22012)")
        // The session survives a failed statement.
        #expect(try await connection.query("SELECT 2 AS two").rows.first?[0] == "2")
    }

    /// A unique violation's DETAIL quotes the duplicate value; a Secret is scrubbed from it.
    @Test func secretParameterIsRedactedFromServerErrors() async throws {
        let database = try await PostgresServer.testDatabase()
        try await database.psql("CREATE TABLE tokens (token text UNIQUE)")
        let connection = try await connect(database)
        let secret = Secret.generate()
        _ = try await connection.query("INSERT INTO tokens VALUES ($1)", [.secret(secret)])
        let error = await #expect(throws: PostgresError.self) {
            _ = try await connection.query("INSERT INTO tokens VALUES ($1)", [.secret(secret)])
        }
        #expect(error?.sqlState == "23505")
        let text = error.map { "\($0)" } ?? ""
        #expect(!text.contains(secret.unredacted))
        #expect(text.contains("<redacted>"))
        // It was sent by value: the stored text is the secret itself.
        #expect(try await database.psql("SELECT token FROM tokens") == secret.unredacted)
    }

    @Test func committedTransactionIsVisible() async throws {
        let database = try await PostgresServer.testDatabase()
        try await database.psql("CREATE TABLE items (name text)")
        let connection = try await connect(database)
        let count = try await connection.withTransaction { transaction in
            _ = try await transaction.query("INSERT INTO items VALUES ($1)", ["a"])
            _ = try await transaction.query("INSERT INTO items VALUES ($1)", ["b"])
            return try await transaction.query("SELECT count(*) FROM items").rows.first?[0]
        }
        #expect(count == "2")
        #expect(try await database.psql("SELECT string_agg(name, ',' ORDER BY name) FROM items") == "a,b")
    }

    /// A SQL error inside the transaction rolls back what it already did.
    @Test func sqlErrorInsideTransactionRollsBack() async throws {
        let database = try await PostgresServer.testDatabase()
        try await database.psql("CREATE TABLE items (name text)")
        let connection = try await connect(database)
        let error = await #expect(throws: PostgresError.self) {
            try await connection.withTransaction { transaction in
                _ = try await transaction.query("INSERT INTO items VALUES ($1)", ["written before the failure"])
                _ = try await transaction.query("SELECT 1 / 0")
            }
        }
        #expect(error?.sqlState == "22012")
        #expect(try await database.psql("SELECT count(*) FROM items") == "0")
        // The connection is clean again: a new transaction works and commits.
        try await connection.withTransaction { transaction in
            _ = try await transaction.query("INSERT INTO items VALUES ($1)", ["after"])
        }
        #expect(try await database.psql("SELECT string_agg(name, ',') FROM items") == "after")
    }

    @Test func swiftErrorInsideTransactionRollsBackAndIsRethrown() async throws {
        let database = try await PostgresServer.testDatabase()
        try await database.psql("CREATE TABLE items (name text)")
        let connection = try await connect(database)
        await #expect(throws: Planned()) {
            try await connection.withTransaction { transaction in
                _ = try await transaction.query("INSERT INTO items VALUES ($1)", ["x"])
                throw Planned()
            }
        }
        #expect(try await database.psql("SELECT count(*) FROM items") == "0")
    }

    /// A failed statement whose error the body swallowed must not let COMMIT pass quietly
    /// (the server would turn it into ROLLBACK).
    @Test func caughtStatementErrorStillFailsTheTransaction() async throws {
        let database = try await PostgresServer.testDatabase()
        try await database.psql("CREATE TABLE items (name text)")
        let connection = try await connect(database)
        let error = await #expect(throws: PostgresError.self) {
            try await connection.withTransaction { transaction in
                _ = try await transaction.query("INSERT INTO items VALUES ($1)", ["x"])
                _ = try? await transaction.query("SELECT 1 / 0")
            }
        }
        #expect(error?.code == .transactionAborted)
        #expect(try await database.psql("SELECT count(*) FROM items") == "0")
    }

    @Test func transactionHandleRefusesUseAfterItsScope() async throws {
        let database = try await PostgresServer.testDatabase()
        let connection = try await connect(database)
        let escaped = try await connection.withTransaction { $0 }
        let error = await #expect(throws: PostgresError.self) {
            _ = try await escaped.query("SELECT 1")
        }
        #expect(error?.code == .transactionAborted)
    }

    @Test func serverNoticesReachTheLogger() async throws {
        let database = try await PostgresServer.testDatabase()
        let recorder = LogRecorder()
        let connection = try await connect(database, logger: recorder.logger())
        _ = try await connection.query("DO $$ BEGIN RAISE NOTICE 'hello %', 'from plpgsql'; RAISE WARNING 'careful'; END $$")
        let notices = recorder.entries.filter { $0.message.hasPrefix("PostgreSQL ") }
        let notice = try #require(notices.first { $0.message.contains("hello from plpgsql") })
        #expect(notice.level == .notice)
        #expect(notice.metadata["severity"] == "NOTICE")
        #expect(notice.metadata["sqlstate"] == "00000")
        let warning = try #require(notices.first { $0.message.contains("careful") })
        #expect(warning.level == .warning)
    }

    /// §5.4-34: a Secret echoed by the server in a notice is logged as `<redacted>`.
    @Test func secretParameterIsRedactedFromNotices() async throws {
        let database = try await PostgresServer.testDatabase()
        try await database.psql("CREATE FUNCTION echo_notice(t text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'got %', t; END $$")
        let recorder = LogRecorder()
        let connection = try await connect(database, logger: recorder.logger())
        let secret = Secret.generate()
        _ = try await connection.query("SELECT echo_notice($1)", [.secret(secret)])
        _ = try await connection.query("SELECT echo_notice($1)", [.text("plain value")])
        let messages = recorder.entries.map(\.fullText)
        #expect(messages.contains { $0.contains("got <redacted>") })
        #expect(messages.contains { $0.contains("got plain value") })
        #expect(!messages.contains { $0.contains(secret.unredacted) })
    }

    /// Every statement has a deadline: the session's statement_timeout.
    @Test func statementTimeoutEndsALongStatement() async throws {
        let database = try await PostgresServer.testDatabase()
        let connection = try await connect(database, options: PostgresConnectOptions(deadline: .seconds(10), statementTimeout: .milliseconds(200)))
        let started = ContinuousClock.now
        let error = await #expect(throws: PostgresError.self) {
            _ = try await connection.query("SELECT pg_sleep(20)")
        }
        #expect(error?.sqlState == "57014")
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test func cancellingTheTaskCancelsTheRunningStatement() async throws {
        let database = try await PostgresServer.testDatabase()
        let started = ContinuousClock.now
        let task = Task {
            let connection = try await connect(database)
            _ = try await connection.query("SELECT pg_sleep(20)")
        }
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        let result = await task.result
        let error = try #require(result.failureValue as? PostgresError)
        #expect(error.code == .cancelled)
        #expect(ContinuousClock.now - started < .seconds(10))
    }
}

extension Result {
    var failureValue: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

/// Holds a connection in actor state, where reentrancy could start a second statement
/// while the first awaits its result.
private actor ConnectionOwner {
    private var connection: PostgresConnection?

    func open(_ connectionString: String) async throws {
        connection = try await PostgresConnection.connect(
            to: PostgresConnectionString(connectionString), options: PostgresConnectOptions(deadline: .seconds(10)), logger: quietLogger)
    }

    func sleep() async throws {
        // Long enough that a loaded machine still sees it running while the test probes.
        _ = try await connection!.query("SELECT pg_sleep(8)")
    }

    func quick() async throws(PostgresError) -> String? {
        try await connection!.query("SELECT 1").rows.first?[0]
    }
}

@Suite("PostgresConnection reentrancy")
struct PostgresConnectionReentrancyTests {
    /// Actor reentrancy must not put two statements on one libpq connection at once.
    @Test func secondStatementWhileOneRunsIsRefused() async throws {
        let database = try await PostgresServer.testDatabase()
        let owner = ConnectionOwner()
        try await owner.open(database.connectionString)
        async let first: Void = owner.sleep()
        // Wait until the first statement is observably running on the server.
        var pause: Duration = .milliseconds(10)
        let deadline = ContinuousClock.now + .seconds(20)
        while try await database.psql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(8)' AND state = 'active'") != "1" {
            #expect(ContinuousClock.now < deadline)
            if ContinuousClock.now >= deadline { break }
            try await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(100))
        }
        let error = await #expect(throws: PostgresError.self) { _ = try await owner.quick() }
        #expect(error?.code == .connectionBusy)
        try await first
        #expect(try await owner.quick() == "1")
    }
}
