import CLibPQ
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One `PQexecParams` call and the conversion of its `PGresult` into a `PostgresResult`
/// or a `PostgresError`, all on the calling (blocking) thread so the `PGresult` never
/// leaves it.
struct StatementExecution: Sendable {
    let sql: String
    let parameters: [PostgresParameter]
    let action: String
    let redactor: Redactor

    func run(on handle: ConnectionHandle) -> Result<PostgresResult, PostgresError> {
        // The notice receiver runs during this call: give it this statement's secrets.
        handle.noticeSink.redactor.withLock { $0 = redactor }
        defer { handle.noticeSink.redactor.withLock { $0 = Redactor() } }

        let copies: [UnsafeMutablePointer<CChar>?] = parameters.map { $0.wireValue.map { strdup($0) } ?? nil }
        defer {
            for (index, copy) in copies.enumerated() {
                guard let copy else { continue }
                // Secrets do not linger in freed heap memory.
                if parameters[index].isSecret { explicit_bzero(copy, strlen(copy)) }
                free(copy)
            }
        }
        let result: OpaquePointer? = sql.withCString { text in
            copies.withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: UnsafePointer<CChar>?.self) { values in
                    // Text format both ways: no types sent (the server infers each
                    // parameter's type from its use), no lengths needed.
                    PQexecParams(handle.pointer, text, Int32(values.count), nil, values.baseAddress, nil, nil, 0)
                }
            }
        }
        guard let result else {
            let code: PostgresError.Code = handle.isBroken ? .connectionLost : .queryFailed
            return .failure(PostgresError(code, action: action, handle.errorMessage(redactor)))
        }
        defer { PQclear(result) }

        let status = PQresultStatus(result)
        if status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY {
            return .success(read(result))
        }
        if status == PGRES_FATAL_ERROR || status == PGRES_NONFATAL_ERROR || status == PGRES_BAD_RESPONSE {
            return .failure(error(from: result, handle: handle))
        }
        return .failure(PostgresError(.unexpectedResult, action: action,
                                      "the statement returned \(String(cString: PQresStatus(status))), which this client does not handle (no COPY, no pipelining)"))
    }

    private func read(_ result: OpaquePointer) -> PostgresResult {
        let columnCount = Int(PQnfields(result))
        let rowCount = Int(PQntuples(result))
        let columns = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
        var rows: [PostgresRow] = []
        rows.reserveCapacity(rowCount)
        for row in 0..<rowCount {
            let values: [String?] = (0..<columnCount).map { column in
                if PQgetisnull(result, Int32(row), Int32(column)) != 0 { return nil }
                return String(cString: PQgetvalue(result, Int32(row), Int32(column)))
            }
            rows.append(PostgresRow(columns: columns, values: values))
        }
        let affected = PQcmdTuples(result).map { String(cString: $0) }.flatMap { Int($0) } ?? 0
        let tag = PQcmdStatus(result).map { String(cString: $0) } ?? ""
        return PostgresResult(columns: columns, rows: rows, affectedRows: affected, commandTag: tag)
    }

    private func error(from result: OpaquePointer, handle: ConnectionHandle) -> PostgresError {
        func field(_ code: Unicode.Scalar) -> String? {
            PQresultErrorField(result, Int32(code.value)).map { redactor.apply(String(cString: $0)) }
        }
        let sqlState = field("C")
        let message = field("M") ?? handle.errorMessage(redactor)
        let code: PostgresError.Code = sqlState == nil && handle.isBroken ? .connectionLost : .queryFailed
        return PostgresError(code, action: action, message, sqlState: sqlState, detail: field("D"))
    }
}
