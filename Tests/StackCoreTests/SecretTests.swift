import StackCore
import Testing

@Suite struct SecretTests {
    /// §5.5-3: fresh secrets are 64 lowercase hex from a CSPRNG.
    @Test func generatedSecretsAre64LowercaseHexAndDistinct() {
        let values = (0..<100).map { _ in Secret.generate().unredacted }
        for value in values {
            #expect(value.count == 64)
            #expect(value.allSatisfy { "0123456789abcdef".contains($0) })
        }
        #expect(Set(values).count == values.count)
    }

    @Test func descriptionIsRedacted() {
        let secret = Secret.generate()
        #expect("\(secret)" == "<redacted>")
        #expect(String(reflecting: secret) == "Secret(<redacted>)")
        #expect(!"\([secret])".contains(secret.unredacted))
    }

    /// §2.4-3, §2.4-4
    @Test func validationAcceptsUppercaseAndRejectsWrongLengthOrNonHex() throws {
        _ = try Secret(validating: String(repeating: "AB", count: 32), name: "X")
        #expect(throws: StackError.self) { try Secret(validating: String(repeating: "a", count: 63), name: "X") }
        #expect(throws: StackError.self) { try Secret(validating: String(repeating: "g", count: 64), name: "X") }
        let error = try #require(throws: StackError.self) { try Secret(validating: "", name: "CRON_SECRET") }
        #expect(error.message == "CRON_SECRET is missing or empty")
    }

    /// §5.4-27: placeholders are never accepted as fresh secrets.
    @Test(arguments: InternalSecrets.Name.allCases)
    func placeholdersAreRejected(name: InternalSecrets.Name) throws {
        var values = Dictionary(uniqueKeysWithValues: InternalSecrets.Name.allCases.map { ($0.variable, Secret.generate().unredacted) })
        values[name.variable] = name.placeholder.uppercased()
        let error = try #require(throws: StackError.self) { try InternalSecrets.fresh(from: { values[$0] }) }
        #expect(error.message.contains(name.variable))
    }

    @Test func payloadRoundTripsInTheContractOrder() throws {
        let secrets = InternalSecrets.generate()
        let text = String(decoding: secrets.payload, as: UTF8.self)
        #expect(text.split(separator: "\n").map { $0.split(separator: "=")[0] } == InternalSecrets.Name.allCases.map { Substring($0.variable) })
        #expect(!text.hasSuffix("\n"))
        #expect(try InternalSecrets.parse(payload: secrets.payload, source: "stdin") == secrets)
    }

    @Test func payloadRejectsUnknownAndDuplicateKeys() throws {
        let secrets = InternalSecrets.generate()
        #expect(throws: StackError.self) { try InternalSecrets.parse(payload: secrets.payload + Array("\nLD_PRELOAD=/x".utf8), source: "stdin") }
        #expect(throws: StackError.self) { try InternalSecrets.parse(payload: secrets.payload + Array("\nCRON_SECRET=\(Secret.generate().unredacted)".utf8), source: "stdin") }
    }
}

@Suite struct Base64Tests {
    @Test(arguments: [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")])
    func matchesRFC4648Vectors(input: String, expected: String) {
        #expect(Base64.encode(Array(input.utf8)) == expected)
    }

    @Test func encodesEveryByteValue() {
        #expect(Base64.encode([0xFF, 0xFE, 0x00, 0x3E, 0x3F]) == "//4APj8=")
    }
}
