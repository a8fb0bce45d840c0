/// The handle `PostgresConnection.withTransaction` passes to its body: statements run
/// through it belong to the transaction. It refuses to run once the body has returned.
public struct PostgresTransaction {
    let connection: PostgresConnection
    let id: UInt64

    public func query(
        _ query: PostgresQuery,
        _ parameters: [PostgresParameter] = [],
        action: String? = nil,
        isolation: isolated (any Actor)? = #isolation
    ) async throws(PostgresError) -> PostgresResult {
        guard connection.openTransaction == id else {
            throw PostgresError(.transactionAborted, action: action ?? query.summary,
                                "the transaction this statement was meant for has already ended")
        }
        return try await connection.query(query, parameters, action: action)
    }
}

@available(*, unavailable, message: "a transaction belongs to the task running withTransaction")
extension PostgresTransaction: Sendable {}
