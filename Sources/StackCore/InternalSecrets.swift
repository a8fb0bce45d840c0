/// The four per-install secrets that a snapshot resume rotates: the internal project's
/// publishable client key (PCK), secret server key (SSK), super secret admin key (SAK)
/// and the cron secret.
public struct InternalSecrets: Sendable, Equatable {
    public enum Name: String, CaseIterable, Sendable {
        case publishableClientKey = "STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY"
        case secretServerKey = "STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY"
        case superSecretAdminKey = "STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY"
        case cronSecret = "CRON_SECRET"

        /// The environment variable that carries it.
        public var variable: String { rawValue }

        /// The public value baked into snapshot-built images. Never a valid fresh secret.
        public var placeholder: String {
            switch self {
            case .publishableClientKey: "00000000000000000000000000000000ffffffffffffffffffffffffffffffff"
            case .secretServerKey: "00000000000000000000000000000000eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
            case .superSecretAdminKey: "00000000000000000000000000000000dddddddddddddddddddddddddddddddd"
            case .cronSecret: "00000000000000000000000000000000cccccccccccccccccccccccccccccccc"
            }
        }
    }

    public var publishableClientKey: Secret
    public var secretServerKey: Secret
    public var superSecretAdminKey: Secret
    public var cronSecret: Secret

    public init(publishableClientKey: Secret, secretServerKey: Secret, superSecretAdminKey: Secret, cronSecret: Secret) {
        self.publishableClientKey = publishableClientKey
        self.secretServerKey = secretServerKey
        self.superSecretAdminKey = superSecretAdminKey
        self.cronSecret = cronSecret
    }

    public subscript(name: Name) -> Secret {
        switch name {
        case .publishableClientKey: publishableClientKey
        case .secretServerKey: secretServerKey
        case .superSecretAdminKey: superSecretAdminKey
        case .cronSecret: cronSecret
        }
    }

    /// Four fresh values from the CSPRNG.
    public static func generate() -> InternalSecrets {
        InternalSecrets(publishableClientKey: .generate(), secretServerKey: .generate(),
                        superSecretAdminKey: .generate(), cronSecret: .generate())
    }

    /// Reads the four values from `lookup` (environment or env file) and validates them
    /// in the order PCK, SSK, SAK, CRON_SECRET. Missing, malformed and placeholder values
    /// are rejected (a placeholder is public, so "rotating" to it would be no rotation).
    public static func fresh(from lookup: (String) -> String?) throws -> InternalSecrets {
        func read(_ name: Name) throws -> Secret {
            let secret = try Secret(validating: lookup(name.variable) ?? "", name: name.variable)
            if secret.unredacted.lowercased() == name.placeholder {
                throw StackError(.invalidSecret, "\(name.variable) is the public build placeholder, not a fresh secret")
            }
            return secret
        }
        return InternalSecrets(publishableClientKey: try read(.publishableClientKey),
                               secretServerKey: try read(.secretServerKey),
                               superSecretAdminKey: try read(.superSecretAdminKey),
                               cronSecret: try read(.cronSecret))
    }

    /// The stdin payload for `trigger-fast-rotate`: four `NAME=value` lines in the
    /// order PCK, SSK, SAK, CRON_SECRET (the last without a trailing newline).
    public var payload: [UInt8] {
        Array(Name.allCases.map { "\($0.variable)=\(self[$0].unredacted)" }.joined(separator: "\n").utf8)
    }

    /// Parses a `payload` (strict env-file grammar). Only the four names are allowed,
    /// each exactly once.
    public static func parse(payload: some Collection<UInt8>, source: String) throws -> InternalSecrets {
        let file = try EnvFile.parse(payload, source: source)
        let allowed = Set(Name.allCases.map(\.variable))
        for entry in file.entries where !allowed.contains(entry.key) {
            throw StackError(.invalidSecret, "\(source):\(entry.line): unexpected key \(entry.key); only the four internal secrets are accepted")
        }
        if let duplicate = file.duplicateKeys.first {
            throw StackError(.invalidSecret, "\(source): \(duplicate) is given more than once")
        }
        return try fresh(from: { file[$0] })
    }
}
