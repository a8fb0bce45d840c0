/// Reads a `<methodResponse>`: exactly one `<params><param><value>` or one
/// `<fault><value><struct>` with an int `faultCode` and a string `faultString`.
/// Values may be string (also untyped), int/i4/i8, boolean, double, array, struct and
/// nil; anything else (base64, dateTime, unknown tags, stray text) is an error.
public enum XMLRPCResponseParser {
    public static func parse(_ bytes: [UInt8]) throws -> XMLRPCResponse {
        let root = try XMLElementParser.parse(bytes)
        guard root.name == "methodResponse" else {
            throw invalid("the root element is <\(root.name)>, expected <methodResponse>")
        }
        let body = try onlyChild(of: root)
        switch body.name {
        case "params":
            let param = try onlyChild(of: body, named: "param")
            return .value(try value(try onlyChild(of: param, named: "value")))
        case "fault":
            let fault = try value(try onlyChild(of: body, named: "value"))
            guard case .structure(let members) = fault,
                  case .int(let code)? = members["faultCode"],
                  case .string(let string)? = members["faultString"]
            else {
                throw invalid("<fault> must hold a struct with an int faultCode and a string faultString, got \(fault)")
            }
            return .fault(code: code, string: string)
        default:
            throw invalid("<methodResponse> holds <\(body.name)>, expected <params> or <fault>")
        }
    }

    static func value(_ element: XMLElement) throws -> XMLRPCValue {
        // A <value> without a type element is a string (XML-RPC spec).
        if element.children.isEmpty { return .string(element.text) }
        let typed = try onlyChild(of: element)
        switch typed.name {
        case "string":
            try requireLeaf(typed)
            return .string(typed.text)
        case "int", "i4", "i8":
            try requireLeaf(typed)
            guard let int = Int(trimmed(typed.text)) else {
                throw invalid("<\(typed.name)> holds \"\(typed.text)\", not an integer")
            }
            return .int(int)
        case "boolean":
            try requireLeaf(typed)
            switch trimmed(typed.text) {
            case "0": return .bool(false)
            case "1": return .bool(true)
            default: throw invalid("<boolean> holds \"\(typed.text)\", expected 0 or 1")
            }
        case "double":
            try requireLeaf(typed)
            guard let double = Double(trimmed(typed.text)), double.isFinite else {
                throw invalid("<double> holds \"\(typed.text)\", not a finite number")
            }
            return .double(double)
        case "nil":
            guard typed.children.isEmpty, typed.text.isEmpty else { throw invalid("<nil/> must be empty") }
            return .null
        case "array":
            let data = try onlyChild(of: typed, named: "data")
            try requireOnlyWhitespace(data)
            return .array(try data.children.map { child in
                guard child.name == "value" else { throw invalid("<data> holds <\(child.name)>, expected <value>") }
                return try value(child)
            })
        case "struct":
            try requireOnlyWhitespace(typed)
            var members: [String: XMLRPCValue] = [:]
            for member in typed.children {
                guard member.name == "member", member.children.count == 2,
                      member.children[0].name == "name", member.children[1].name == "value"
                else {
                    throw invalid("<struct> members must be <member><name>…</name><value>…</value></member>")
                }
                try requireOnlyWhitespace(member)
                try requireLeaf(member.children[0])
                let name = member.children[0].text
                guard members[name] == nil else { throw invalid("<struct> has member \"\(name)\" twice") }
                members[name] = try value(member.children[1])
            }
            return .structure(members)
        default:
            throw invalid("unsupported XML-RPC type <\(typed.name)>")
        }
    }

    // MARK: shape checks

    private static func onlyChild(of element: XMLElement, named name: String? = nil) throws -> XMLElement {
        try requireOnlyWhitespace(element)
        guard element.children.count == 1 else {
            throw invalid("<\(element.name)> must hold exactly one element, it holds \(element.children.count)")
        }
        let child = element.children[0]
        if let name, child.name != name {
            throw invalid("<\(element.name)> holds <\(child.name)>, expected <\(name)>")
        }
        return child
    }

    private static func requireOnlyWhitespace(_ element: XMLElement) throws {
        guard element.hasOnlyWhitespaceText else {
            throw invalid("unexpected text inside <\(element.name)>")
        }
    }

    private static func requireLeaf(_ element: XMLElement) throws {
        guard element.children.isEmpty else { throw invalid("<\(element.name)> must not contain elements") }
    }

    private static func trimmed(_ text: String) -> Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = text.firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = text.lastIndex(where: { !isSpace($0) })!
        return text[first...last]
    }

    private static func invalid(_ what: String) -> SupervisordError {
        SupervisordError(.invalidResponse, "unexpected XML-RPC reply from supervisord: \(what)")
    }
}
