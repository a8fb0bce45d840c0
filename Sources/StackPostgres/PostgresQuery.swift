/// The text of one SQL statement, with `$1`, `$2`, … where values go.
///
/// It can only be written as a string literal (`StaticString`; no interpolation, no
/// initialiser from `String`), so no value known only at run time can ever become part of
/// the SQL: values travel separately as `PostgresParameter`s, bound by `PQexecParams`.
/// The extended protocol also refuses several statements in one text.
public struct PostgresQuery: Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    public let sql: String

    public init(_ sql: StaticString) {
        self.sql = sql.withUTF8Buffer { String(decoding: $0, as: UTF8.self) }
    }

    public init(stringLiteral value: StaticString) {
        self.init(value)
    }

    public var description: String { sql }

    /// A short one-line form for error messages: the SQL holds no values, so it is safe
    /// to show, but a whole statement would drown the message.
    var summary: String {
        let line = PostgresError.oneLine(sql)
        return line.count <= 60 ? line : String(line.prefix(57)) + "..."
    }
}
