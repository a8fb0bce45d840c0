import Logging
import StackPostgres
import Testing
import TestSupport

/// Connecting while the server is down, starting, or refusing us.
@Suite("PostgresConnection.connect")
struct PostgresConnectRetryTests {
    static let password = PostgresTestDatabase.passwordRolePassword

    /// A server that is not running (stopped, socket gone): bounded retry, then one clear
    /// line naming the target and the last reason, and never the password. (§1.2 step 7,
    /// §5.4-34)
    @Test func downServerFailsWithinDeadlineWithOneClearLine() async throws {
        try await PostgresServer.withServer { server in
            await server.stop()
            let recorder = LogRecorder()
            let connectionString = try PostgresConnectionString(
                server.connectionString(user: "stack_app", password: Self.password))
            let deadline: Duration = .milliseconds(700)
            let started = ContinuousClock.now
            let error = await #expect(throws: PostgresError.self) {
                _ = try await PostgresConnection.connect(
                    to: connectionString, options: PostgresConnectOptions(deadline: deadline), logger: recorder.logger())
            }
            let elapsed = ContinuousClock.now - started
            #expect(error?.code == .serverUnavailable)
            #expect(elapsed >= deadline)
            #expect(elapsed < deadline + .seconds(2))
            let text = error.map { "\($0)" } ?? ""
            #expect(!text.contains("\n"))
            #expect(text.contains("connect to PostgreSQL at stack_app@\(server.socketDirectory)/postgres"))
            #expect(text.contains("No such file or directory"))
            #expect(text.contains("no connection within 700 ms"))
            // Retried with backoff from ~10 ms: several attempts fit in 700 ms (at least
            // two even on a machine loaded by parallel tests).
            let attempts = text.split(separator: "(").dropFirst().first.flatMap { Int($0.prefix { $0.isNumber }) } ?? 0
            #expect(attempts >= 2)
            #expect(!text.contains(Self.password))
            #expect(!recorder.entries.contains { $0.fullText.contains(Self.password) })
        }
    }

    /// The server comes up while we wait: the retry loop connects once it accepts.
    @Test func connectSucceedsWhenServerStartsLate() async throws {
        try await PostgresServer.withServer(started: false) { server in
            let recorder = LogRecorder()
            let delay: Duration = .milliseconds(500)
            let started = ContinuousClock.now
            async let lateStart: Void = {
                try await Task.sleep(for: delay)
                try await server.start()
            }()
            let connection = try await PostgresConnection.connect(
                to: PostgresConnectionString(server.connectionString()),
                options: PostgresConnectOptions(deadline: .seconds(60)), logger: recorder.logger())
            try await lateStart
            #expect(ContinuousClock.now - started >= delay)
            #expect(try await connection.query("SELECT 42").rows.first?[0] == "42")
            #expect(recorder.entries.contains { $0.message.hasPrefix("waiting for PostgreSQL at") })
        }
    }

    /// A stopped server that is started again is reachable again (stop keeps the cluster).
    @Test func restartedServerKeepsItsData() async throws {
        try await PostgresServer.withServer { server in
            try await server.psql("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
            await server.stop()
            #expect(await !server.isRunning)
            try await server.start()
            #expect(try await server.psql("SELECT v FROM kept") == "still here")
        }
    }

    /// A wrong password is final: no retrying until the deadline, and the error names the
    /// problem without either password. (§5.4-34)
    @Test(arguments: [false, true])
    func wrongPasswordFailsAtOnceWithoutRevealingIt(keyValueForm: Bool) async throws {
        let database = try await PostgresServer.testDatabase()
        let wrong = "Wr0ng-Passw0rd-\(keyValueForm)"
        let raw = keyValueForm
            ? database.server.keyValueConnectionString(database: database.name, user: PostgresTestDatabase.passwordRole, password: wrong)
            : database.connectionString(password: wrong)
        let recorder = LogRecorder()
        let started = ContinuousClock.now
        let error = await #expect(throws: PostgresError.self) {
            _ = try await PostgresConnection.connect(
                to: PostgresConnectionString(raw), options: PostgresConnectOptions(deadline: .seconds(30)), logger: recorder.logger())
        }
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(error?.code == .connectionRejected)
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains("password authentication failed for user \"\(PostgresTestDatabase.passwordRole)\""))
        #expect(!text.contains(wrong))
        #expect(!text.contains(Self.password))
        #expect(!recorder.entries.contains { $0.fullText.contains(wrong) })
    }

    @Test(arguments: [false, true])
    func rightPasswordConnects(keyValueForm: Bool) async throws {
        let database = try await PostgresServer.testDatabase()
        let raw = keyValueForm
            ? database.server.keyValueConnectionString(database: database.name, user: PostgresTestDatabase.passwordRole, password: Self.password)
            : database.connectionString(password: Self.password)
        let connection = try await PostgresConnection.connect(
            to: PostgresConnectionString(raw), options: PostgresConnectOptions(deadline: .seconds(10)), logger: quietLogger)
        #expect(try await connection.query("SELECT current_user").rows.first?[0] == PostgresTestDatabase.passwordRole)
        #expect(connection.serverVersion >= 150000)
    }

    @Test func unknownDatabaseFailsAtOnce() async throws {
        let database = try await PostgresServer.testDatabase()
        let started = ContinuousClock.now
        let error = await #expect(throws: PostgresError.self) {
            _ = try await PostgresConnection.connect(
                to: PostgresConnectionString(database.server.connectionString(database: "no_such_database")),
                options: PostgresConnectOptions(deadline: .seconds(120)), logger: quietLogger)
        }
        // Far below the 120 s retry deadline: not retried (the margin absorbs a loaded machine).
        #expect(ContinuousClock.now - started < .seconds(30))
        #expect(error?.code == .connectionRejected)
        #expect(error?.message.contains("database \"no_such_database\" does not exist") == true)
    }

    /// An option value libpq cannot use is not retried.
    @Test func invalidOptionValueFailsAtOnce() async throws {
        let started = ContinuousClock.now
        let error = await #expect(throws: PostgresError.self) {
            _ = try await PostgresConnection.connect(
                to: PostgresConnectionString("host=/tmp port=not-a-port dbname=x password=Hidden-Pass-123"),
                options: PostgresConnectOptions(deadline: .seconds(30)), logger: quietLogger)
        }
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(error?.code == .invalidConnectionString)
        #expect(error?.message.contains("not-a-port") == true)
        #expect(error.map { !"\($0)".contains("Hidden-Pass-123") } == true)
    }

    @Test func cancellingTheTaskStopsWaitingForTheServer() async throws {
        let connectionString = try PostgresConnectionString("postgresql://postgres@/postgres?host=/tmp/pg-no-such-dir-\(UInt32.random(in: 0...UInt32.max))")
        let started = ContinuousClock.now
        let task = Task {
            _ = try await PostgresConnection.connect(
                to: connectionString, options: PostgresConnectOptions(deadline: .seconds(120)), logger: quietLogger)
        }
        try await Task.sleep(for: .milliseconds(200))
        task.cancel()
        let error = try #require(await task.result.failureValue as? PostgresError)
        #expect(error.code == .cancelled)
        #expect(ContinuousClock.now - started < .seconds(30), "cancellation, not the 120 s deadline, ended the wait")
    }
}
