/// The banner QEMU sends on every new QMP connection.
public struct QMPGreeting: Decodable, Sendable, Equatable {
    public let version: QEMUVersion
    /// Optional protocol capabilities QEMU offers (e.g. `oob`); none is enabled by us.
    public let capabilities: [String]
}

/// QEMU's version, from the greeting (`{"qemu":{"major":7,"minor":2,"micro":22},"package":…}`).
public struct QEMUVersion: Decodable, Sendable, Equatable, Comparable, CustomStringConvertible {
    public let major: Int
    public let minor: Int
    public let micro: Int
    /// The distribution's package string, e.g. `Debian 1:7.2+dfsg-7+deb12u18+b3`.
    public let package: String

    public init(major: Int, minor: Int, micro: Int, package: String = "") {
        self.major = major
        self.minor = minor
        self.micro = micro
        self.package = package
    }

    private struct Numbers: Decodable { let major: Int; let minor: Int; let micro: Int }
    private enum CodingKeys: String, CodingKey { case qemu, package }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let numbers = try container.decode(Numbers.self, forKey: .qemu)
        self.init(major: numbers.major, minor: numbers.minor, micro: numbers.micro,
                  package: try container.decodeIfPresent(String.self, forKey: .package) ?? "")
    }

    public static func < (lhs: QEMUVersion, rhs: QEMUVersion) -> Bool {
        (lhs.major, lhs.minor, lhs.micro) < (rhs.major, rhs.minor, rhs.micro)
    }

    public var description: String { "\(major).\(minor).\(micro)" }
}
