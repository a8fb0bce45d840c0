/// One XML-RPC value: the types supervisord sends and accepts.
public enum XMLRPCValue: Sendable, Equatable, CustomStringConvertible {
    case string(String)
    /// `<int>`, `<i4>` or `<i8>`.
    case int(Int)
    case bool(Bool)
    case double(Double)
    case array([XMLRPCValue])
    /// `<struct>`: member names are unique.
    case structure([String: XMLRPCValue])
    /// `<nil/>` (an extension supervisord does not send by default).
    case null

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var intValue: Int? {
        if case .int(let value) = self { return value }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    public var arrayValue: [XMLRPCValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    public var structureValue: [String: XMLRPCValue]? {
        if case .structure(let value) = self { return value }
        return nil
    }

    /// The member `name` of a struct; `nil` for a missing member or a non-struct.
    public subscript(member name: String) -> XMLRPCValue? {
        structureValue?[name]
    }

    /// The XML-RPC type name, for error messages.
    public var typeName: String {
        switch self {
        case .string: "string"
        case .int: "int"
        case .bool: "boolean"
        case .double: "double"
        case .array: "array"
        case .structure: "struct"
        case .null: "nil"
        }
    }

    public var description: String {
        switch self {
        case .string(let value): "\"\(value)\""
        case .int(let value): String(value)
        case .bool(let value): value ? "true" : "false"
        case .double(let value): String(value)
        case .array(let values): "[" + values.map(\.description).joined(separator: ", ") + "]"
        case .structure(let members):
            "{" + members.keys.sorted().map { "\($0): \(members[$0]!)" }.joined(separator: ", ") + "}"
        case .null: "nil"
        }
    }
}

/// A decoded `<methodResponse>`: either one value or a fault.
public enum XMLRPCResponse: Sendable, Equatable {
    case value(XMLRPCValue)
    case fault(code: Int, string: String)
}
