/// An element of a parsed document: its name, child elements, and character data.
struct XMLElement: Sendable, Equatable {
    var name: String
    var children: [XMLElement] = []
    /// All character data directly inside the element (entities decoded).
    var text: String = ""

    /// `true` when the element's own character data is only whitespace (indentation).
    var hasOnlyWhitespaceText: Bool {
        text.unicodeScalars.allSatisfy { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
    }
}

/// A small, strict parser for the XML subset XML-RPC uses: an optional XML declaration,
/// elements without attributes, character data, the five predefined entities and
/// character references, comments and CDATA. Anything else — DOCTYPE (and with it any
/// entity expansion), attributes, processing instructions in the body, malformed or
/// mismatched tags, invalid UTF-8, characters XML forbids — is an error naming the byte
/// offset. Nesting is bounded so hostile input cannot exhaust the stack.
struct XMLElementParser {
    static let maximumDepth = 64

    private let bytes: [UInt8]
    private var index = 0

    private init(_ bytes: [UInt8]) { self.bytes = bytes }

    static func parse(_ bytes: [UInt8]) throws -> XMLElement {
        var parser = XMLElementParser(bytes)
        return try parser.document()
    }

    // MARK: document structure

    private mutating func document() throws -> XMLElement {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3 }  // UTF-8 byte order mark
        if matches("<?xml") {
            guard let end = find("?>") else { throw failure("unterminated XML declaration") }
            index = end + 2
        }
        try skipMisc()
        guard peek() == UInt8(ascii: "<") else { throw failure("expected the root element") }
        let root = try element(depth: 1)
        try skipMisc()
        guard index == bytes.count else { throw failure("unexpected content after the root element") }
        return root
    }

    /// Whitespace and comments between top-level constructs.
    private mutating func skipMisc() throws {
        while index < bytes.count {
            if isWhitespace(bytes[index]) {
                index += 1
            } else if matches("<!--") {
                try skipComment()
            } else if matches("<!") {
                throw failure("DOCTYPE and other declarations are not accepted")
            } else if matches("<?") {
                throw failure("processing instructions are not accepted")
            } else {
                return
            }
        }
    }

    private mutating func element(depth: Int) throws -> XMLElement {
        guard depth <= XMLElementParser.maximumDepth else {
            throw failure("elements nested deeper than \(XMLElementParser.maximumDepth)")
        }
        index += 1  // "<"
        let name = try self.name()
        skipWhitespace()
        var element = XMLElement(name: name)
        if matches("/>") {
            index += 2
            return element
        }
        guard peek() == UInt8(ascii: ">") else {
            throw failure("attributes are not accepted (in <\(name)>)")
        }
        index += 1

        var text: [UInt8] = []
        while true {
            guard index < bytes.count else { throw failure("unterminated <\(name)>") }
            if bytes[index] != UInt8(ascii: "<") {
                try characterData(into: &text)
            } else if matches("</") {
                index += 2
                let closing = try self.name()
                skipWhitespace()
                guard peek() == UInt8(ascii: ">") else { throw failure("malformed end tag </\(closing)") }
                index += 1
                guard closing == name else { throw failure("</\(closing)> does not close <\(name)>") }
                guard let decoded = String(validating: text, as: UTF8.self) else {
                    throw failure("invalid UTF-8 in <\(name)>")
                }
                element.text = decoded
                return element
            } else if matches("<!--") {
                try skipComment()
            } else if matches("<![CDATA[") {
                index += 9
                guard let end = find("]]>") else { throw failure("unterminated CDATA section") }
                try appendLiteral(bytes[index..<end], to: &text)
                index = end + 3
            } else if matches("<!") || matches("<?") {
                throw failure("declarations and processing instructions are not accepted inside elements")
            } else {
                element.children.append(try self.element(depth: depth + 1))
            }
        }
    }

    private mutating func name() throws -> String {
        let start = index
        while index < bytes.count, isNameByte(bytes[index]) { index += 1 }
        guard index > start else { throw failure("expected an element name") }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    private mutating func skipComment() throws {
        guard let end = find("-->", from: index + 4) else { throw failure("unterminated comment") }
        index = end + 3
    }

    // MARK: character data

    /// Reads up to the next `<`, decoding entity and character references.
    private mutating func characterData(into text: inout [UInt8]) throws {
        let start = index
        while index < bytes.count, bytes[index] != UInt8(ascii: "<") {
            if bytes[index] == UInt8(ascii: "&") {
                try appendLiteral(bytes[start..<index], to: &text)
                try reference(into: &text)
                return
            }
            index += 1
        }
        try appendLiteral(bytes[start..<index], to: &text)
    }

    /// Literal bytes: line ends normalised to LF as XML requires, forbidden controls rejected.
    private func appendLiteral(_ slice: ArraySlice<UInt8>, to text: inout [UInt8]) throws {
        var previousWasCR = false
        for byte in slice {
            if byte == 0x0A && previousWasCR {
                previousWasCR = false
                continue
            }
            previousWasCR = byte == 0x0D
            if byte == 0x0D {
                text.append(0x0A)
                continue
            }
            if byte < 0x20 && byte != 0x09 && byte != 0x0A {
                throw failure("control character 0x\(String(byte, radix: 16)) is not allowed in XML")
            }
            text.append(byte)
        }
    }

    private mutating func reference(into text: inout [UInt8]) throws {
        let start = index
        guard let semicolon = bytes[index...].prefix(12).firstIndex(of: UInt8(ascii: ";")) else {
            throw failure("unterminated entity reference")
        }
        let body = Array(bytes[(start + 1)..<semicolon])
        index = semicolon + 1
        switch String(decoding: body, as: UTF8.self) {
        case "lt": text.append(UInt8(ascii: "<"))
        case "gt": text.append(UInt8(ascii: ">"))
        case "amp": text.append(UInt8(ascii: "&"))
        case "quot": text.append(UInt8(ascii: "\""))
        case "apos": text.append(UInt8(ascii: "'"))
        case let reference where reference.hasPrefix("#"):
            var digits = reference.dropFirst()
            var radix = 10
            if digits.hasPrefix("x") {
                digits = digits.dropFirst()
                radix = 16
            }
            guard !digits.isEmpty, digits.allSatisfy({ $0.isHexDigit }),
                  let value = UInt32(digits, radix: radix),
                  let scalar = Unicode.Scalar(value), XMLCharacters.isAllowed(scalar)
            else {
                index = start
                throw failure("invalid character reference &\(reference);")
            }
            text.append(contentsOf: String(scalar).utf8)
        case let other:
            index = start
            throw failure("unknown entity &\(other);")
        }
    }

    // MARK: scanning helpers

    private func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

    private func matches(_ literal: StaticString) -> Bool {
        literal.withUTF8Buffer { bytes[index...].starts(with: $0) }
    }

    private func find(_ literal: StaticString, from start: Int? = nil) -> Int? {
        literal.withUTF8Buffer { needle -> Int? in
            var position = start ?? index
            while position + needle.count <= bytes.count {
                if bytes[position..<(position + needle.count)].elementsEqual(needle) { return position }
                position += 1
            }
            return nil
        }
    }

    private mutating func skipWhitespace() {
        while index < bytes.count, isWhitespace(bytes[index]) { index += 1 }
    }

    private func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    /// XML-RPC's element names are ASCII; that is all we accept.
    private func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: ":"):
            true
        default:
            false
        }
    }

    private func failure(_ what: String) -> SupervisordError {
        SupervisordError(.invalidResponse, "malformed XML from supervisord at byte \(index): \(what)")
    }
}
