/// What a statement returned, copied out of libpq's `PGresult` (which is freed at once):
/// text values (`nil` for SQL NULL), the command tag and the affected-row count.
public struct PostgresResult: Sendable {
    /// Column names, in order.
    public let columns: [String]
    public let rows: [PostgresRow]
    /// `PQcmdTuples`: rows inserted, updated, deleted or selected; 0 when the command
    /// does not report a count (e.g. `BEGIN`).
    public let affectedRows: Int
    /// `PQcmdStatus`, e.g. `INSERT 0 1`, `UPDATE 1`, `COMMIT`, `ROLLBACK`.
    public let commandTag: String

    public init(columns: [String], rows: [PostgresRow], affectedRows: Int, commandTag: String) {
        self.columns = columns
        self.rows = rows
        self.affectedRows = affectedRows
        self.commandTag = commandTag
    }
}

/// One row: the values in column order, as PostgreSQL's text output.
public struct PostgresRow: Sendable {
    public let columns: [String]
    public let values: [String?]

    public init(columns: [String], values: [String?]) {
        self.columns = columns
        self.values = values
    }

    public subscript(index: Int) -> String? { values[index] }

    /// The value of the column named `name`; throws when there is no such column, so a
    /// typo in a column name is an error rather than a silent NULL.
    public func value(_ name: String) throws(PostgresError) -> String? {
        guard let index = columns.firstIndex(of: name) else {
            throw PostgresError(.unexpectedResult, action: "read column \"\(name)\"",
                                "the result has no such column (columns: \(columns.joined(separator: ", ")))")
        }
        return values[index]
    }
}
