/// What one rewrite pass did.
public struct RewriteSummary: Sendable, Equatable, CustomStringConvertible {
    /// Regular files read through the rule.
    public var filesScanned = 0
    /// Files whose content the rule changed (rewritten in place, or written changed
    /// into the destination of a copy).
    public var filesChanged = 0
    /// Occurrences replaced, over all files.
    public var tokensReplaced = 0
    /// Bytes read from scanned files.
    public var bytesRead: Int64 = 0
    /// Sentinel mode: variable names that were replaced, sorted.
    public var replacedNames: [String] = []
    /// Sentinel mode: names of tokens left verbatim (variable unset or empty, or a
    /// token without a name), sorted; "" stands for `STACK_ENV_VAR_SENTINEL_` alone.
    public var unresolvedNames: [String] = []
    public var elapsed: Duration = .zero

    public init() {}

    public var description: String {
        "scanned=\(filesScanned) changed=\(filesChanged) replaced=\(tokensReplaced) bytes=\(bytesRead) elapsed=\(elapsed)"
    }
}

/// What one copy did; `rewrite` covers the files that went through the rule.
public struct CopySummary: Sendable, Equatable, CustomStringConvertible {
    public var filesCopied = 0
    public var bytesCopied: Int64 = 0
    public var directories = 0
    public var symlinks = 0
    /// FIFOs, sockets and devices, which are not copied.
    public var specialFilesSkipped = 0
    public var rewrite = RewriteSummary()
    public var elapsed: Duration = .zero

    public init() {}

    /// Whether anything was written into the destination: if so, any earlier sentinel
    /// substitution there is gone and the marker must be considered stale (§5.4 #35).
    public var copiedAnything: Bool { filesCopied > 0 || symlinks > 0 || directories > 0 }

    public var description: String {
        "files=\(filesCopied) bytes=\(bytesCopied) dirs=\(directories) symlinks=\(symlinks) skipped=\(specialFilesSkipped) "
            + "rewrite: scanned=\(rewrite.filesScanned) changed=\(rewrite.filesChanged) replaced=\(rewrite.tokensReplaced) "
            + "bytes=\(rewrite.bytesRead) elapsed=\(elapsed)"
    }
}
