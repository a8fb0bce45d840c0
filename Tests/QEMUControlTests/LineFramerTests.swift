@testable import QEMUControl
import Testing

@Suite struct LineFramerTests {
    private func drain(_ framer: inout LineFramer) throws -> [FramedItem] {
        var items: [FramedItem] = []
        while let item = try framer.next() { items.append(item) }
        return items
    }

    private func line(_ text: String) -> FramedItem { .line(Array(text.utf8)) }

    @Test func severalMessagesInOneReadAreAllReturned() throws {
        var framer = LineFramer(maximumMessageSize: 1024, recognizesDelimiter: false)
        framer.append(Array("{\"a\":1}\r\n{\"b\":2}\n\n{\"c\":".utf8))
        #expect(try drain(&framer) == [line("{\"a\":1}"), line("{\"b\":2}")])
        #expect(framer.pendingByteCount == 5)
        framer.append(Array("3}\r\n".utf8))
        #expect(try drain(&framer) == [line("{\"c\":3}")])
        #expect(framer.pendingByteCount == 0)
    }

    @Test func messageSplitAtEveryByteIsReassembled() throws {
        let text = "{\"return\": {\"status\": \"running\"}, \"id\": 7}\r\n{\"event\": \"STOP\"}\r\n"
        var framer = LineFramer(maximumMessageSize: 1024, recognizesDelimiter: false)
        var items: [FramedItem] = []
        for byte in text.utf8 {
            framer.append([byte])
            items += try drain(&framer)
        }
        #expect(items == [line("{\"return\": {\"status\": \"running\"}, \"id\": 7}"), line("{\"event\": \"STOP\"}")])
    }

    /// Messages of 10 MB and more (guest-exec output, input-data) arrive in many reads.
    @Test func tenMegabyteMessageInSmallChunks() throws {
        let payload = [UInt8](repeating: UInt8(ascii: "x"), count: 10 * 1024 * 1024)
        let message = Array("{\"return\":\"".utf8) + payload + Array("\"}\n{\"id\":2}\n".utf8)
        var framer = LineFramer(maximumMessageSize: 64 << 20, recognizesDelimiter: false)
        var items: [FramedItem] = []
        var offset = 0
        while offset < message.count {
            let end = min(offset + 65_536, message.count)
            message[offset..<end].withUnsafeBytes { framer.append($0) }
            items += try drain(&framer)
            offset = end
        }
        #expect(items.count == 2)
        guard case .line(let first) = items[0] else { Issue.record("expected a line"); return }
        #expect(first.count == payload.count + 13)
        #expect(items[1] == line("{\"id\":2}"))
    }

    @Test func oversizedMessageIsRejected() throws {
        var framer = LineFramer(maximumMessageSize: 16, recognizesDelimiter: false)
        framer.append(Array("{\"a\":\"0123456789abcdef\"".utf8))
        let error = try #require(throws: QEMUControlError.self) { _ = try framer.next() }
        #expect(error.code == .protocolViolation)
    }

    /// The agent's 0xFF marker discards a partial line and is reported.
    @Test func delimiterDiscardsPartialLine() throws {
        var framer = LineFramer(maximumMessageSize: 1024, recognizesDelimiter: true)
        framer.append(Array("{\"return\": 1}\n{\"ret".utf8) + [0xFF] + Array("{\"return\": 5}\n".utf8))
        #expect(try drain(&framer) == [line("{\"return\": 1}"), .delimiter, line("{\"return\": 5}")])
    }

    @Test func delimiterIsDataWhenNotRecognised() throws {
        var framer = LineFramer(maximumMessageSize: 1024, recognizesDelimiter: false)
        framer.append([0xFF] + Array("{}\n".utf8))
        #expect(try drain(&framer) == [.line([0xFF] + Array("{}".utf8))])
    }
}
