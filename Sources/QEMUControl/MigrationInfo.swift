/// A migration status (`query-migrate`'s and the `MIGRATION` event's `status`). Open set.
public struct MigrationStatus: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
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

    public static let none: MigrationStatus = "none"
    public static let setup: MigrationStatus = "setup"
    public static let active: MigrationStatus = "active"
    public static let device: MigrationStatus = "device"
    public static let preSwitchover: MigrationStatus = "pre-switchover"
    public static let postcopyActive: MigrationStatus = "postcopy-active"
    public static let completed: MigrationStatus = "completed"
    public static let failed: MigrationStatus = "failed"
    public static let cancelling: MigrationStatus = "cancelling"
    public static let cancelled: MigrationStatus = "cancelled"

    /// No further status change will follow.
    public var isFinal: Bool { self == .completed || self == .failed || self == .cancelled }
}

/// `query-migrate`'s result (the members the orchestrator uses). Before any migration
/// QEMU returns `{}`: every member is optional.
public struct MigrationInfo: Decodable, Sendable, Equatable {
    public struct RAM: Decodable, Sendable, Equatable {
        public let transferred: Int64
        public let total: Int64
        public let remaining: Int64
        public let duplicate: Int64?
        public let normal: Int64?
        public let mbps: Double?
    }

    public let status: MigrationStatus?
    public let ram: RAM?
    /// Milliseconds since the migration started (or its total when finished).
    public let totalTime: Int64?
    /// Milliseconds the guest was stopped.
    public let downtime: Int64?
    public let setupTime: Int64?
    /// Why a migration failed.
    public let errorDescription: String?

    private enum CodingKeys: String, CodingKey {
        case status, ram, downtime
        case totalTime = "total-time"
        case setupTime = "setup-time"
        case errorDescription = "error-desc"
    }
}

/// One migration capability and its state (`query-migrate-capabilities` entries,
/// `migrate-set-capabilities` arguments).
public struct MigrationCapabilityState: Codable, Sendable, Equatable {
    public let capability: MigrationCapability
    public let state: Bool

    public init(_ capability: MigrationCapability, _ state: Bool) {
        self.capability = capability
        self.state = state
    }
}

/// A migration capability name. Open set.
public struct MigrationCapability: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
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

    /// Emit `MIGRATION` events (needed to await completion without polling; off by default).
    public static let events: MigrationCapability = "events"
    /// Fixed-offset RAM in a file (QEMU ≥ 9.0); absent on QEMU 7.2.
    public static let mappedRAM: MigrationCapability = "mapped-ram"
    public static let multifd: MigrationCapability = "multifd"
    public static let xIgnoreShared: MigrationCapability = "x-ignore-shared"
    public static let postcopyRAM: MigrationCapability = "postcopy-ram"
}

/// `migrate-set-parameters` arguments / `query-migrate-parameters` result (the members
/// the orchestrator uses; nil members are left unchanged).
public struct MigrationParameters: Codable, Sendable, Equatable {
    /// Bytes per second; QEMU 7.2 defaults to 128 MiB/s, which makes a capture ~10× slower.
    public var maxBandwidth: Int64?
    public var multifdChannels: Int64?
    /// Milliseconds of tolerated downtime.
    public var downtimeLimit: Int64?

    public init(maxBandwidth: Int64? = nil, multifdChannels: Int64? = nil, downtimeLimit: Int64? = nil) {
        self.maxBandwidth = maxBandwidth
        self.multifdChannels = multifdChannels
        self.downtimeLimit = downtimeLimit
    }

    private enum CodingKeys: String, CodingKey {
        case maxBandwidth = "max-bandwidth"
        case multifdChannels = "multifd-channels"
        case downtimeLimit = "downtime-limit"
    }
}

/// `add-fd`'s result: the descriptor set and the descriptor number inside QEMU
/// (usable as `/dev/fdset/<fdsetID>` where QEMU opens files).
public struct AddedDescriptor: Decodable, Sendable, Equatable {
    public let fdsetID: Int64
    public let fd: Int64

    private enum CodingKeys: String, CodingKey {
        case fdsetID = "fdset-id"
        case fd
    }
}
