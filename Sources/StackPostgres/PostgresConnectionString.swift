import CLibPQ

/// A libpq connection string (`postgresql://user:password@host:5432/db?…` or
/// `host=… dbname=… password=…`), validated by libpq's own parser.
///
/// It carries a password, so it behaves like a `Secret`: `description` is the redacted
/// target (`user@host:port/dbname`), never the password, and the raw text is reachable
/// only inside this module (it is handed to libpq and nowhere else).
public struct PostgresConnectionString: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    let raw: String
    /// `user@host:port/dbname` with libpq's defaults left out; never contains the password.
    public let target: String
    /// The password given in the string, for scrubbing it out of server and libpq messages.
    let password: String?

    public init(_ raw: String) throws(PostgresError) {
        if raw.utf8.contains(0) {
            throw PostgresError(.invalidConnectionString, action: "parse the database connection string",
                                "it contains a NUL byte")
        }
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(raw, &errorMessage) else {
            // libpq's parse errors quote the offending piece of the string, which may be
            // (part of) the password, so its text is not passed on.
            if let errorMessage { PQfreemem(errorMessage) }
            throw PostgresError(
                .invalidConnectionString, action: "parse the database connection string",
                "expected a postgresql:// URI or space-separated key=value pairs (check quoting and percent-encoding)")
        }
        defer { PQconninfoFree(options) }
        var values: [String: String] = [:]
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val {
                values[String(cString: keyword)] = String(cString: value)
            }
            option += 1
        }
        self.raw = raw
        self.password = values["password"].flatMap { $0.isEmpty ? nil : $0 }
        self.target = PostgresConnectionString.describeTarget(values)
    }

    public var description: String { target }
    public var debugDescription: String { "PostgresConnectionString(\(target))" }
    public var customMirror: Mirror { Mirror(self, children: ["target": target], displayStyle: .struct) }

    static func describeTarget(_ values: [String: String]) -> String {
        var text = ""
        if let user = values["user"], !user.isEmpty { text += "\(user)@" }
        let host = values["host"].flatMap { $0.isEmpty ? nil : $0 } ?? values["hostaddr"].flatMap { $0.isEmpty ? nil : $0 }
        text += host ?? "(default socket)"
        if let port = values["port"], !port.isEmpty { text += ":\(port)" }
        if let database = values["dbname"], !database.isEmpty { text += "/\(database)" }
        return text
    }
}

/// Replaces known secret values (the connection password, `Secret` parameters) by
/// `<redacted>` in texts that came from libpq or the server, which may quote them
/// (e.g. a unique-violation DETAIL quotes the duplicate key).
struct Redactor: Sendable {
    private(set) var values: [String] = []

    init(_ values: [String] = []) {
        for value in values { add(value) }
    }

    /// Values shorter than 4 characters are not scrubbed: replacing every "a" in a
    /// message would garble it while protecting nothing worth protecting.
    mutating func add(_ value: String?) {
        guard let value, value.count >= 4, !values.contains(value) else { return }
        values.append(value)
        // Longest first, so a value that contains another is replaced whole.
        values.sort { $0.count > $1.count }
    }

    func apply(_ text: String) -> String {
        var result = text
        for value in values where result.contains(value) {
            result = result.replacing(value, with: "<redacted>")
        }
        return result
    }
}
