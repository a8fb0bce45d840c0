import StackPostgres
import Testing

@Suite("PostgresConnectionString")
struct PostgresConnectionStringTests {
    static let password = "Sup3r-Secret-Passw0rd"

    /// §5.4-34: the connection string's password never reaches logs or errors.
    @Test(arguments: [
        "postgresql://stack:\(password)@db.internal:5432/stackframe",
        "postgres://stack:\(password)@db.internal:5432/stackframe?sslmode=disable",
        "postgresql://stack@db.internal:5432/stackframe?password=\(password)",
        "host=db.internal port=5432 user=stack password=\(password) dbname=stackframe",
        "host=db.internal port=5432 user=stack password='\(password)' dbname=stackframe",
    ])
    func descriptionNamesTargetButNotPassword(_ raw: String) throws {
        let connectionString = try PostgresConnectionString(raw)
        #expect(connectionString.description == "stack@db.internal:5432/stackframe")
        #expect(!"\(connectionString)".contains(Self.password))
        #expect(!String(reflecting: connectionString).contains(Self.password))
        #expect(!"\(Mirror(reflecting: connectionString).children.map { "\($0.value)" })".contains(Self.password))
    }

    @Test func unixSocketTargetIsDescribed() throws {
        let connectionString = try PostgresConnectionString("postgresql://postgres@/stackframe?host=/run/postgresql")
        #expect(connectionString.target == "postgres@/run/postgresql/stackframe")
    }

    /// libpq's parse errors quote pieces of the string; ours must not echo the password.
    @Test(arguments: [
        "postgresql://stack:\(password)@db:notaport%zz/x",
        "host=db password=\(password) 'unterminated",
        "host=db \(password)",
    ])
    func malformedStringIsRejectedWithoutEchoingIt(_ raw: String) {
        let error = #expect(throws: PostgresError.self) { try PostgresConnectionString(raw) }
        #expect(error?.code == .invalidConnectionString)
        #expect(error.map { !"\($0)".contains(Self.password) } == true)
        #expect(error.map { !"\($0)".contains("\n") } == true)
    }
}
