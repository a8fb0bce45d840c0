import Testing
@testable import Supervisord

/// The XML-RPC writer and parser on their own: no socket, no supervisord.
@Suite struct XMLRPCTests {
    /// Wraps encoded `<value>`s the way a methodResponse carries them, so a request's
    /// parameters can be read back by the response parser.
    private func roundTrip(_ value: XMLRPCValue) throws -> XMLRPCValue {
        let request = try XMLRPCMethodCall("m", [value]).encoded()
        let text = String(decoding: request, as: UTF8.self)
        let start = try #require(text.firstRange(of: "<params>"))
        let end = try #require(text.firstRange(of: "</params>"))
        let response = "<?xml version='1.0'?>\n<methodResponse>" + text[start.lowerBound..<end.upperBound] + "</methodResponse>"
        guard case .value(let decoded) = try XMLRPCResponseParser.parse(Array(response.utf8)) else {
            Issue.record("expected a value")
            return .null
        }
        return decoded
    }

    @Test func markupCharactersInStringsSurviveARoundTrip() throws {
        let hostile = "a<b>&c\"d'e</string></value><value><int>1</int>&amp;&#60;]]>"
        #expect(try roundTrip(.string(hostile)) == .string(hostile))
    }

    @Test func markupCharactersNeverAppearRawInTheRequest() throws {
        let body = String(decoding: try XMLRPCMethodCall("supervisor.getProcessInfo", [.string("x<y&z\"'>")]).encoded(), as: UTF8.self)
        #expect(body.contains("<string>x&lt;y&amp;z&quot;&apos;&gt;</string>"))
        #expect(!body.contains("x<y"))
    }

    @Test func structMemberNamesAreEscapedToo() throws {
        let value = XMLRPCValue.structure(["<name&>": .string("v"), "plain": .int(-7)])
        #expect(try roundTrip(value) == value)
    }

    @Test func everyValueTypeRoundTrips() throws {
        let value = XMLRPCValue.array([
            .string(""), .string("ünïcødé ✓ 𝄞"), .int(0), .int(Int(Int32.max)), .int(-42), .int(1 << 40),
            .bool(true), .bool(false), .double(1.5), .null,
            .array([]), .structure([:]),
            .structure(["nested": .array([.structure(["deep": .string("yes")])])]),
        ])
        #expect(try roundTrip(value) == value)
    }

    @Test func carriageReturnsAndTabsArePreserved() throws {
        let text = "line1\r\nline2\rline3\n\tend"
        #expect(try roundTrip(.string(text)) == .string(text))
    }

    @Test func wideIntegersUseI8() throws {
        let body = String(decoding: try XMLRPCMethodCall("m", [.int(1 << 40)]).encoded(), as: UTF8.self)
        #expect(body.contains("<i8>1099511627776</i8>"))
    }

    @Test func controlCharactersAreRejectedBeforeSending() {
        #expect(throws: SupervisordError.self) { try XMLRPCMethodCall("m", [.string("a\u{01}b")]).encoded() }
        #expect(throws: SupervisordError.self) { try XMLRPCMethodCall("m", [.double(.nan)]).encoded() }
    }

    @Test func methodNamesAreRestrictedToIdentifiers() {
        let error = #expect(throws: SupervisordError.self) { try XMLRPCMethodCall("a<b>", []).encoded() }
        #expect(error?.code == .invalidRequest)
    }

    @Test func parsesAFaultFromSupervisord() throws {
        // Verbatim from supervisord 4.2.5 (getProcessInfo of an unknown name).
        let reply = """
        <?xml version='1.0'?>
        <methodResponse>
        <fault>
        <value><struct>
        <member>
        <name>faultCode</name>
        <value><int>10</int></value>
        </member>
        <member>
        <name>faultString</name>
        <value><string>BAD_NAME: x&lt;y&amp;"</string></value>
        </member>
        </struct></value>
        </fault>
        </methodResponse>
        """
        #expect(try XMLRPCResponseParser.parse(Array(reply.utf8)) == .fault(code: 10, string: "BAD_NAME: x<y&\""))
    }

    @Test func aFaultWithoutItsMembersIsInvalid() {
        let reply = "<methodResponse><fault><value><struct><member><name>faultCode</name><value><string>10</string></value></member></struct></value></fault></methodResponse>"
        let error = #expect(throws: SupervisordError.self) { try XMLRPCResponseParser.parse(Array(reply.utf8)) }
        #expect(error?.code == .invalidResponse)
    }

    @Test func parsesProcessInfoFromSupervisord() throws {
        let reply = """
        <?xml version='1.0'?>
        <methodResponse>
        <params>
        <param>
        <value><struct>
        <member><name>name</name><value><string>a</string></value></member>
        <member><name>group</name><value><string>a</string></value></member>
        <member><name>start</name><value><int>1795955094</int></value></member>
        <member><name>stop</name><value><int>0</int></value></member>
        <member><name>now</name><value><int>1795955094</int></value></member>
        <member><name>state</name><value><int>20</int></value></member>
        <member><name>statename</name><value><string>RUNNING</string></value></member>
        <member><name>spawnerr</name><value><string></string></value></member>
        <member><name>exitstatus</name><value><int>0</int></value></member>
        <member><name>logfile</name><value><string>/tmp/a.log</string></value></member>
        <member><name>stdout_logfile</name><value><string>/tmp/a.log</string></value></member>
        <member><name>stderr_logfile</name><value><string>/tmp/a.err</string></value></member>
        <member><name>pid</name><value><int>4242</int></value></member>
        <member><name>description</name><value><string>pid 4242, uptime 0:00:01</string></value></member>
        </struct></value>
        </param>
        </params>
        </methodResponse>
        """
        guard case .value(let value) = try XMLRPCResponseParser.parse(Array(reply.utf8)) else {
            Issue.record("expected a value")
            return
        }
        let process = try SupervisedProcess(value)
        #expect(process.name == "a")
        #expect(process.qualifiedName == "a:a")
        #expect(process.state == .running)
        #expect(process.pid == 4242)
        #expect(process.startTime == 1_795_955_094)
        #expect(process.standardErrorLogfile == "/tmp/a.err")
    }

    @Test func untypedValuesAreStringsAndEntitiesAreDecoded() throws {
        let reply = "<methodResponse><params><param><value>  a&#60;&#x3E;&quot;&apos;&amp; </value></param></params></methodResponse>"
        #expect(try XMLRPCResponseParser.parse(Array(reply.utf8)) == .value(.string("  a<>\"'& ")))
    }

    @Test func commentsAndCDATAAreUnderstood() throws {
        let reply = "<?xml version='1.0'?><!-- c --><methodResponse><params><!-- c --><param><value><string><![CDATA[<raw & text>]]></string></value></param></params></methodResponse>\n"
        #expect(try XMLRPCResponseParser.parse(Array(reply.utf8)) == .value(.string("<raw & text>")))
    }

    @Test(arguments: [
        "",
        "not xml",
        "<methodResponse>",
        "<methodCall><params/></methodCall>",
        "<!DOCTYPE x [<!ENTITY a 'b'>]><methodResponse><params><param><value>&a;</value></param></params></methodResponse>",
        "<methodResponse attr='1'><params><param><value>x</value></param></params></methodResponse>",
        "<methodResponse><params><param><value>x</value></param></params></methodRespons>",
        "<methodResponse><params><param><value>x</value></param></params></methodResponse><extra/>",
        "<methodResponse><params><param><value><int>12a</int></value></param></params></methodResponse>",
        "<methodResponse><params><param><value><boolean>true</boolean></value></param></params></methodResponse>",
        "<methodResponse><params><param><value><base64>AA==</base64></value></param></params></methodResponse>",
        "<methodResponse><params><param><value>&bogus;</value></param></params></methodResponse>",
        "<methodResponse><params><param><value>&#1;</value></param></params></methodResponse>",
        "<methodResponse><params><param><value>a & b</value></param></params></methodResponse>",
        "<methodResponse><params><param><value>\u{01}</value></param></params></methodResponse>",
        "<methodResponse><params>text<param><value>x</value></param></params></methodResponse>",
        "<methodResponse><params><param><value>x</value></param><param><value>y</value></param></params></methodResponse>",
        "<methodResponse><params><param><value><struct><member><name>a</name><value>1</value></member><member><name>a</name><value>2</value></member></struct></value></param></params></methodResponse>",
        "<methodResponse><params><param><value><array><value>x</value></array></value></param></params></methodResponse>",
        "<methodResponse><params><param><value><string>a<b/></string></value></param></params></methodResponse>",
    ])
    func malformedRepliesAreRejected(_ reply: String) {
        let error = #expect(throws: SupervisordError.self) { try XMLRPCResponseParser.parse(Array(reply.utf8)) }
        #expect(error?.code == .invalidResponse)
    }

    @Test func invalidUTF8IsRejected() {
        var reply = Array("<methodResponse><params><param><value><string>".utf8)
        reply += [0xC3, 0x28]
        reply += Array("</string></value></param></params></methodResponse>".utf8)
        #expect(throws: SupervisordError.self) { try XMLRPCResponseParser.parse(reply) }
    }

    @Test func deepNestingIsBounded() {
        let depth = 200
        let reply = "<methodResponse><params><param>"
            + String(repeating: "<value><array><data>", count: depth)
            + String(repeating: "</data></array></value>", count: depth)
            + "</param></params></methodResponse>"
        let error = #expect(throws: SupervisordError.self) { try XMLRPCResponseParser.parse(Array(reply.utf8)) }
        #expect(error?.message.contains("nested deeper") == true)
    }
}
