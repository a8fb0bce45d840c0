#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
@testable import QEMUControl
import StackCore
import Testing

@Suite struct ProtocolCodingTests {
    private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    /// §5.4-7: requests are encoded, never formatted: quotes, backslashes, newlines and
    /// commas in values survive.
    @Test func requestEncodingEscapesHostileStrings() throws {
        struct Arguments: Encodable, Sendable { let uri: String }
        let hostile = "exec:cat > \"/tmp/a b\\c\",x\n{\"execute\":\"quit\"}"
        let line = try QMPRequest(execute: "migrate", arguments: Arguments(uri: hostile), id: 9).encodedLine()
        #expect(line.last == 0x0A)
        #expect(line.dropLast().allSatisfy { $0 != 0x0A })
        let decoded = try JSONDecoder().decode(JSONValue.self, from: Data(line.dropLast()))
        #expect(decoded["arguments"]?["uri"]?.stringValue == hostile)
        #expect(decoded["execute"] == "migrate")
        #expect(decoded["id"] == 9)
    }

    @Test func commandWithoutArgumentsOmitsTheMember() throws {
        let line = try QMPRequest(execute: "query-status", id: 1).encodedLine()
        #expect(text(line) == "{\"execute\":\"query-status\",\"id\":1}\n")
    }

    /// The guest-set-time request carries the nanosecond time exactly (beyond 2^53),
    /// and the argument-less form (set from RTC) sends no `arguments` at all.
    @Test func setTimeRequestShape() throws {
        let nanoseconds: Int64 = 1_795_955_106_123_456_789
        let line = try QMPRequest(execute: "guest-set-time", arguments: GuestAgentClient.setTimeArguments(nanoseconds), id: 3).encodedLine()
        #expect(text(line) == "{\"arguments\":{\"time\":1795955106123456789},\"execute\":\"guest-set-time\",\"id\":3}\n")
        let bare = try QMPRequest(execute: "guest-set-time", arguments: GuestAgentClient.setTimeArguments(nil), id: 4).encodedLine()
        #expect(text(bare) == "{\"execute\":\"guest-set-time\",\"id\":4}\n")
    }

    /// §5.4-5/§5.5-5: the secret payload goes base64 into input-data; argv and env stay free of it.
    @Test func execInputTravelsOnlyAsBase64InputData() throws {
        let secrets = InternalSecrets.generate()
        let arguments = GuestAgentClient.ExecArguments(path: "/usr/local/bin/trigger-fast-rotate", arguments: [],
                                                       environment: nil, input: secrets.payload, captureOutput: true)
        let line = text(try QMPRequest(execute: "guest-exec", arguments: arguments, id: 1).encodedLine())
        #expect(!line.contains(secrets.publishableClientKey.unredacted))
        #expect(!line.contains("\"arg\""))
        #expect(!line.contains("\"env\""))
        let decoded = try JSONDecoder().decode(JSONValue.self, from: Data(line.utf8))
        let inputData = try #require(decoded["arguments"]?["input-data"]?.stringValue)
        #expect(Data(base64Encoded: inputData).map(Array.init) == secrets.payload)
        #expect(decoded["arguments"]?["capture-output"] == true)
    }

    /// §5.4-8: events, replies and the greeting are told apart by their members; an
    /// event is never taken for a reply, whatever it contains.
    @Test func messagesAreClassifiedByMembers() throws {
        func decode(_ json: String) -> QMPMessage? { QMPMessage.decode(Array(json.utf8), sequence: 1) }
        let event = try #require(decode(#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "MIGRATION", "data": {"status": "completed", "id": 5}}"#))
        #expect(!event.isReply(to: 5))
        #expect(event.event?.migrationStatus == .completed)
        #expect(event.event?.timestamp == QMPEvent.Timestamp(seconds: 1, microseconds: 2))

        let reply = try #require(decode(#"{"return": {"status": "running", "running": true}, "id": 5}"#))
        #expect(reply.isReply(to: 5))
        #expect(!reply.isReply(to: 6))
        #expect(reply.event == nil)
        guard case .reply(let body) = reply else { Issue.record("not a reply"); return }
        #expect(try body.decodeReturn(VMStatus.self, command: "query-status", peer: "test") == VMStatus(status: .running, running: true))

        let failure = try #require(decode(#"{"id": 6, "error": {"class": "CommandNotFound", "desc": "The command x has not been found"}}"#))
        guard case .reply(let failed) = failure else { Issue.record("not a reply"); return }
        let error = try #require(throws: QEMUControlError.self) { try failed.check(command: "x", peer: "QMP test") }
        #expect(error.code == .commandFailed)
        #expect(error.qemuClass == "CommandNotFound")
        #expect(error.qemuDescription == "The command x has not been found")

        let greeting = try #require(decode(#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian"}, "capabilities": ["oob"]}}"#))
        guard case .greeting(let banner) = greeting else { Issue.record("not a greeting"); return }
        #expect(banner.version == QEMUVersion(major: 7, minor: 2, micro: 22, package: "Debian"))
        #expect(decode("not json") == nil)
    }

    /// §5.4-8: a process that exited without an exit code is not a success.
    @Test func execStatusWithoutExitCodeIsNotSuccess() throws {
        func result(_ json: String) throws -> GuestExecResult {
            GuestExecResult(pid: 1, status: try JSONDecoder().decode(GuestExecStatus.self, from: Data(json.utf8)))
        }
        #expect(try result(#"{"exited": true, "exitcode": 0, "out-data": "aGkK"}"#).isSuccess)
        #expect(try result(#"{"exited": true, "exitcode": 0, "out-data": "aGkK"}"#).standardOutputText == "hi\n")
        let signaled = try result(#"{"exited": true, "signal": 9}"#)
        #expect(signaled.termination == .signaled(signal: 9))
        #expect(!signaled.isSuccess)
        let unknown = try result(#"{"exited": true}"#)
        #expect(unknown.termination == .unknown)
        #expect(!unknown.isSuccess)
        #expect(throws: QEMUControlError.self) { try unknown.requireSuccess("trigger") }
    }

    @Test func jsonValueKeepsLargeIntegersAndRoundTrips() throws {
        let source = #"{"a": 9007199254740993, "b": 1.5, "c": [true, null, "x"], "d": {"e": -1}}"#
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(source.utf8))
        #expect(value["a"]?.intValue == 9_007_199_254_740_993)
        #expect(value["b"]?.doubleValue == 1.5)
        #expect(value["c"]?[0] == true)
        #expect(value["c"]?[1] == .null)
        #expect(value["d"]?["e"] == -1)
        let again = try JSONDecoder().decode(JSONValue.self, from: try JSONCoding.encoder().encode(value))
        #expect(again == value)
    }
}
