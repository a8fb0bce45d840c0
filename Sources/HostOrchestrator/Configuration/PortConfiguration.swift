/// The host ports the VM forwards and the guest port prefix `P` (§4.2, §4.8).
///
/// Five forwards, all bound to 127.0.0.1: dashboard → guest `<P>01`, backend →
/// `<P>02`, MinIO → 9090, Inbucket → 9001, and the mock OAuth server on `<P>14` with
/// the same number on both sides.
public struct PortConfiguration: Sendable, Equatable, Hashable {
    /// Decimal digits without a leading zero, at most 655 (so `<P>14` ≤ 65514).
    public let prefix: String
    public let dashboard: UInt16
    public let backend: UInt16
    public let minio: UInt16
    public let inbucket: UInt16

    public static let defaultPrefix = "81"
    public static let guestMinIOPort: UInt16 = 9090
    public static let guestInbucketPort: UInt16 = 9001

    public static let `default` = try! PortConfiguration(prefix: defaultPrefix, dashboard: 26700, backend: 26701, minio: 26702, inbucket: 26703)

    /// Validates the prefix and that all five host ports are distinct.
    public init(prefix: String, dashboard: UInt16, backend: UInt16, minio: UInt16, inbucket: UInt16) throws {
        guard PortConfiguration.isValidPrefix(prefix) else {
            throw HostError(.invalidConfiguration, "Invalid PORT_PREFIX: \(prefix) (expected 1-655 without a leading zero, so that <P>01, <P>02 and <P>14 are valid ports)")
        }
        self.prefix = prefix
        self.dashboard = dashboard
        self.backend = backend
        self.minio = minio
        self.inbucket = inbucket
        for port in [dashboard, backend, minio, inbucket] where port == 0 {
            throw HostError(.invalidConfiguration, "Invalid port 0: host ports must be 1-65535")
        }
        var seen: [UInt16: String] = [:]
        for forward in forwards {
            if let other = seen[forward.hostPort] {
                throw HostError(.invalidConfiguration, "Port \(forward.hostPort) is used for both \(other) and \(forward.name); each forwarded host port must be different")
            }
            seen[forward.hostPort] = forward.name
        }
    }

    public static func isValidPrefix(_ prefix: String) -> Bool {
        guard !prefix.isEmpty, prefix.utf8.count <= 3, prefix.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              prefix.first != "0", let value = Int(prefix) else { return false }
        return value <= 655
    }

    /// Guest port `<P>01`.
    public var guestDashboard: UInt16 { guestPort("01") }
    /// Guest port `<P>02`.
    public var guestBackend: UInt16 { guestPort("02") }
    /// `<P>14`, forwarded to the same number in the guest.
    public var mockOAuth: UInt16 { guestPort("14") }

    private func guestPort(_ suffix: String) -> UInt16 {
        // Guaranteed in range by isValidPrefix.
        UInt16(prefix + suffix)!
    }

    public struct Forward: Sendable, Equatable, Hashable {
        public let name: String
        public let hostPort: UInt16
        public let guestPort: UInt16
    }

    /// The five forwards in command-line order; also the order of the port-free check.
    public var forwards: [Forward] {
        [
            Forward(name: "dashboard", hostPort: dashboard, guestPort: guestDashboard),
            Forward(name: "backend", hostPort: backend, guestPort: guestBackend),
            Forward(name: "MinIO", hostPort: minio, guestPort: PortConfiguration.guestMinIOPort),
            Forward(name: "Inbucket", hostPort: inbucket, guestPort: PortConfiguration.guestInbucketPort),
            Forward(name: "mock OAuth", hostPort: mockOAuth, guestPort: mockOAuth),
        ]
    }

    /// What a snapshot bakes into the guest (its runtime.env): a snapshot captured with
    /// other values must not be resumed (§5.4 #21).
    public var fingerprint: String {
        "prefix=\(prefix);dashboard=\(dashboard);backend=\(backend);minio=\(minio);inbucket=\(inbucket)"
    }
}
