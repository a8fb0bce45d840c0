/// An XML-RPC `<methodCall>`, encoded by `XMLWriter`: tag names are compile-time
/// constants and every value goes through `text(_:)`, which escapes it, so no value can
/// change the document's structure.
public struct XMLRPCMethodCall: Sendable, Equatable {
    public let method: String
    public let parameters: [XMLRPCValue]

    public init(_ method: String, _ parameters: [XMLRPCValue] = []) {
        self.method = method
        self.parameters = parameters
    }

    /// The request body. Throws `.invalidRequest` for a method name that is not a plain
    /// dotted identifier, or for a value XML 1.0 cannot carry (control characters,
    /// non-finite doubles).
    public func encoded() throws -> [UInt8] {
        guard !method.isEmpty, method.utf8.allSatisfy(XMLRPCMethodCall.isMethodNameByte) else {
            throw SupervisordError(.invalidRequest, "invalid XML-RPC method name \"\(method)\": only letters, digits and . _ : / are allowed")
        }
        var writer = XMLWriter()
        writer.raw("<?xml version=\"1.0\"?>\n")
        writer.open("methodCall")
        writer.open("methodName")
        try writer.text(method)
        writer.close("methodName")
        writer.open("params")
        for parameter in parameters {
            writer.open("param")
            try writer.value(parameter)
            writer.close("param")
        }
        writer.close("params")
        writer.close("methodCall")
        return writer.bytes
    }

    private static func isMethodNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "/"):
            true
        default:
            false
        }
    }
}

/// Appends well-formed XML to a byte buffer.
struct XMLWriter {
    private(set) var bytes: [UInt8] = []

    mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    mutating func open(_ tag: StaticString) {
        bytes.append(UInt8(ascii: "<"))
        raw(tag)
        bytes.append(UInt8(ascii: ">"))
    }

    mutating func close(_ tag: StaticString) {
        bytes.append(contentsOf: [UInt8(ascii: "<"), UInt8(ascii: "/")])
        raw(tag)
        bytes.append(UInt8(ascii: ">"))
    }

    mutating func element(_ tag: StaticString, text: String) throws {
        open(tag)
        try self.text(text)
        close(tag)
    }

    /// Character data with `& < > " '` escaped. A carriage return is written as `&#13;`
    /// because a parser would otherwise normalise it to a line feed. Characters XML 1.0
    /// forbids (C0 controls other than tab/LF/CR, U+FFFE, U+FFFF) are rejected: no escape
    /// can carry them.
    mutating func text(_ text: String) throws {
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": raw("&amp;")
            case "<": raw("&lt;")
            case ">": raw("&gt;")
            case "\"": raw("&quot;")
            case "'": raw("&apos;")
            case "\r": raw("&#13;")
            case "\t", "\n": bytes.append(UInt8(scalar.value))
            default:
                guard XMLCharacters.isAllowed(scalar) else {
                    throw SupervisordError(.invalidRequest, "cannot send U+\(String(scalar.value, radix: 16, uppercase: true)) to supervisord: XML 1.0 has no representation for it")
                }
                bytes.append(contentsOf: String(scalar).utf8)
            }
        }
    }

    mutating func value(_ value: XMLRPCValue) throws {
        open("value")
        switch value {
        case .string(let string):
            try element("string", text: string)
        case .int(let int):
            // <int> is 32-bit in XML-RPC; wider values need the common <i8> extension.
            if let narrow = Int32(exactly: int) {
                try element("int", text: String(narrow))
            } else {
                try element("i8", text: String(int))
            }
        case .bool(let bool):
            try element("boolean", text: bool ? "1" : "0")
        case .double(let double):
            guard double.isFinite else {
                throw SupervisordError(.invalidRequest, "cannot send \(double) to supervisord: XML-RPC doubles are finite")
            }
            try element("double", text: String(double))
        case .array(let values):
            open("array")
            open("data")
            for element in values { try self.value(element) }
            close("data")
            close("array")
        case .structure(let members):
            open("struct")
            for name in members.keys.sorted() {
                open("member")
                try element("name", text: name)
                try self.value(members[name]!)
                close("member")
            }
            close("struct")
        case .null:
            raw("<nil/>")
        }
        close("value")
    }
}

enum XMLCharacters {
    /// XML 1.0 `Char` production (tab, LF and CR are handled by the callers).
    static func isAllowed(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09, 0x0A, 0x0D: true
        case 0x20...0xD7FF, 0xE000...0xFFFD, 0x10000...0x10FFFF: true
        default: false
        }
    }
}
