/// `guest-info`'s result.
public struct GuestAgentInfo: Decodable, Sendable, Equatable {
    public struct SupportedCommand: Decodable, Sendable, Equatable {
        public let name: String
        public let enabled: Bool
        public let successResponse: Bool

        private enum CodingKeys: String, CodingKey {
            case name, enabled
            case successResponse = "success-response"
        }
    }

    public let version: String
    public let supportedCommands: [SupportedCommand]

    private enum CodingKeys: String, CodingKey {
        case version
        case supportedCommands = "supported_commands"
    }

    /// True when the agent offers `name` and it is not disabled (`qemu-ga -b`).
    public func isEnabled(_ name: String) -> Bool {
        supportedCommands.contains { $0.name == name && $0.enabled }
    }
}
