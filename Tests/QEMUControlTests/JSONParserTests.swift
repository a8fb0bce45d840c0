#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
@testable import QEMUControl
import Testing

@Suite struct JSONParserTests {
    private func parse(_ text: String) throws -> JSONValue { try JSONParser.parse(Array(text.utf8)) }

    @Test func parsesEveryKindOfValue() throws {
        let value = try parse(#" {"a": [1, -2, 3.5, -0.25e2, 1E3], "b": {"c": null, "d": true, "e": false}, "f": "", "g": 9223372036854775807} "#)
        #expect(value["a"] == [1, -2, 3.5, -25.0, 1000.0])
        #expect(value["b"]?["c"] == .null)
        #expect(value["b"]?["d"] == true)
        #expect(value["b"]?["e"] == false)
        #expect(value["f"] == "")
        #expect(value["g"]?.intValue == Int64.max)
        #expect(try parse("18446744073709551616") == .double(18446744073709551616))
        #expect(try parse("[]") == [])
        #expect(try parse("{}") == .object([:]))
    }

    @Test func decodesEscapesAndSurrogatePairs() throws {
        #expect(try parse(#""a\"b\\c\/d\n\t\r\b\f""#) == "a\"b\\c/d\n\t\r\u{08}\u{0C}")
        #expect(try parse(#""\u00e9\u20AC\ud83d\ude00""#) == "é€😀")
        #expect(try parse(#""\ud800x""#) == "\u{FFFD}x")
        #expect(try parse("\"héllo ✓\"") == "héllo ✓")
    }

    @Test func rejectsMalformedInput() {
        for text in ["", "{", "[1,]", "{\"a\" 1}", "{\"a\":1,}", "01", "1.", "-", "tru", "\"abc", "\"a\u{01}\"",
                     "\"\\x\"", "\"\\u12\"", "[1] [2]", "{'a':1}", "NaN"] {
            #expect(throws: JSONParser.Failure.self, "\(text)") { _ = try parse(text) }
        }
        let deep = String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
        #expect(throws: JSONParser.Failure.self) { _ = try parse(deep) }
    }

    /// The parser agrees with Foundation's decoder on a real QMP-like document.
    @Test func agreesWithFoundation() throws {
        let text = #"{"return": {"status": "completed", "ram": {"transferred": 12345678901, "mbps": 268.435456, "total": 0}, "error-desc": "x\"y"}, "id": {"n": [1, "two", null]}}"#
        let ours = try parse(text)
        let theirs = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        #expect(ours == theirs)
    }

    @Test func decodesTypedValuesFromParsedJSON() throws {
        let info = try parse(#"{"status": "active", "ram": {"transferred": 10, "total": 20, "remaining": 10, "mbps": 1.5}, "total-time": 7}"#)
            .decode(as: MigrationInfo.self)
        #expect(info.status == .active)
        #expect(info.ram?.transferred == 10)
        #expect(info.ram?.mbps == 1.5)
        #expect(info.totalTime == 7)
        #expect(info.downtime == nil)
        #expect(throws: DecodingError.self) { _ = try parse(#"{"status": 5, "running": true}"#).decode(as: VMStatus.self) }
        #expect(throws: DecodingError.self) { _ = try parse(#"{"running": true}"#).decode(as: VMStatus.self) }
        #expect(throws: DecodingError.self) { _ = try parse("300").decode(as: Int8.self) }
        #expect(try parse("[1, 2]").decode(as: [Int32].self) == [1, 2])
    }
}
