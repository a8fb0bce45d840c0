/// What the rewriter replaces. Both kinds run through the same streaming engine.
///
/// Its description never shows the bytes (a rotated key is one of the internal
/// secrets), only their lengths.
public enum RewriteRule: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// Sentinel substitution (§1.2 step 9, §5.3): every token `STACK_ENV_VAR_SENTINEL_<NAME>`
    /// becomes the value of `<NAME>`.
    ///
    /// A token is the longest run matching `STACK_ENV_VAR_SENTINEL[A-Z_]*`, so the token
    /// `…_FOO_BAR` is never rewritten as `…_FOO` followed by `_BAR`. Digits end a token
    /// on purpose: a minifier may fold `SENTINEL_NEXT_PUBLIC_STACK_PORT_PREFIX + "01"`
    /// into one string, and the prefix must still be replaced there. The bare
    /// `STACK_ENV_VAR_SENTINEL`, a token without the `_` separator and a token whose
    /// variable is unset or empty stay verbatim. Values are inserted byte for byte.
    case sentinels(SentinelValues)

    /// Every occurrence of `search` becomes `replacement` (leftmost, non-overlapping),
    /// in any file whatever its name (§5.4 #28).
    case literal(search: [UInt8], replacement: [UInt8])

    /// The fixed part of every sentinel token.
    public static let sentinelPrefix: [UInt8] = Array("STACK_ENV_VAR_SENTINEL".utf8)

    /// Convenience for string arguments.
    public static func literal(_ search: String, _ replacement: String) -> RewriteRule {
        .literal(search: Array(search.utf8), replacement: Array(replacement.utf8))
    }

    public var description: String {
        switch self {
        case .sentinels: "sentinels"
        case .literal(let search, let replacement): "literal(<\(search.count) bytes> → <\(replacement.count) bytes>)"
        }
    }

    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .enum) }

    func validated() throws -> RewriteRule {
        if case .literal(let search, _) = self, search.isEmpty {
            throw RewriteError(.invalidRule, "literal rewrite: the search string is empty; give the bytes to replace")
        }
        return self
    }
}

/// Where sentinel values come from. Called once per distinct variable name per
/// worker thread; `nil` or `""` leaves the token in place.
public struct SentinelValues: Sendable {
    let lookup: @Sendable (String) -> String?

    public init(_ lookup: @escaping @Sendable (String) -> String?) {
        self.lookup = lookup
    }

    /// Values from a dictionary, typically the environment the executable assembled.
    public init(_ values: [String: String]) {
        self.lookup = { values[$0] }
    }
}
