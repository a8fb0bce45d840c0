/// A QEMU run state (`query-status`'s `status`). An open set: values this code does not
/// know are kept verbatim.
public struct RunState: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
    public var description: String { rawValue }

    public static let running: RunState = "running"
    public static let paused: RunState = "paused"
    /// Source side after an outgoing migration completed.
    public static let postmigrate: RunState = "postmigrate"
    /// Waiting for (or loading) an incoming migration.
    public static let inmigrate: RunState = "inmigrate"
    /// Started with `-S`, never run.
    public static let prelaunch: RunState = "prelaunch"
    public static let finishMigrate: RunState = "finish-migrate"
    public static let shutdown: RunState = "shutdown"
    public static let internalError: RunState = "internal-error"
    public static let ioError: RunState = "io-error"
    public static let guestPanicked: RunState = "guest-panicked"
    public static let restoreVM: RunState = "restore-vm"
    public static let suspended: RunState = "suspended"
    public static let watchdog: RunState = "watchdog"
    public static let debug: RunState = "debug"
    public static let saveVM: RunState = "save-vm"
    public static let colo: RunState = "colo"

    /// States from which `cont` makes the guest run.
    public var isResumable: Bool { [.paused, .postmigrate, .prelaunch].contains(self) }
    /// States that mean the guest is broken (no point in waiting).
    public var isFailure: Bool { [.internalError, .ioError, .guestPanicked, .shutdown].contains(self) }
}

/// `query-status`'s result.
public struct VMStatus: Decodable, Sendable, Equatable {
    public let status: RunState
    public let running: Bool
}
