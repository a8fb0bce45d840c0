import StackCore

/// One value bound to a `$n` placeholder, sent in text format (the server converts it to
/// the column's type). `nil` is SQL NULL.
///
/// A `Secret` is sent by its `unredacted` value, but its `description` stays `<redacted>`
/// and the value is scrubbed from any server message or notice about the statement.
public struct PostgresParameter: Sendable, Equatable, CustomStringConvertible, ExpressibleByStringLiteral, ExpressibleByNilLiteral {
    enum Storage: Sendable, Equatable {
        case null
        case text(String)
        case secret(Secret)
    }

    let storage: Storage

    public static func text(_ value: String?) -> PostgresParameter {
        PostgresParameter(storage: value.map(Storage.text) ?? .null)
    }

    public static func secret(_ value: Secret) -> PostgresParameter {
        PostgresParameter(storage: .secret(value))
    }

    public static let null = PostgresParameter(storage: .null)

    init(storage: Storage) { self.storage = storage }

    public init(stringLiteral value: String) { storage = .text(value) }
    public init(nilLiteral: ()) { storage = .null }

    /// What goes on the wire.
    var wireValue: String? {
        switch storage {
        case .null: return nil
        case .text(let text): return text
        case .secret(let secret): return secret.unredacted
        }
    }

    var isSecret: Bool {
        if case .secret = storage { return true }
        return false
    }

    public var description: String {
        switch storage {
        case .null: return "NULL"
        case .text(let text): return "\"\(text)\""
        case .secret(let secret): return secret.description
        }
    }
}
