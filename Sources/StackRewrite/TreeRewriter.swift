/// Rewrites, in place, every regular file under a directory that the rule changes.
///
/// Each file is read once through a fixed buffer; a file without a token that
/// changes it is never written (its mtime stays). A changed file is written to a
/// temporary file in the same directory and renamed over the original, keeping its
/// mode (and owner, as root): readers see the old or the new content, never a mix,
/// and a failure leaves the original. Symlinks are not followed; FIFOs, sockets and
/// devices are skipped. Used for sentinels when the work directory is the image tree
/// and for key rotation (§2.3 step 4, §5.4 #28, #29).
public struct TreeRewriter: Sendable {
    public var rule: RewriteRule
    public var options: RewriteOptions

    public init(rule: RewriteRule, options: RewriteOptions = RewriteOptions()) {
        self.rule = rule
        self.options = options
    }

    /// - Throws: `RewriteError` naming the first file that could not be read or
    ///   replaced; files already rewritten keep their (complete) new content, so running
    ///   again finishes the job.
    public func rewrite(directory: String) throws -> RewriteSummary {
        try TreeWalk(mode: .inPlace, source: directory, rule: rule, scope: nil, options: options).run().rewrite
    }

    /// `rewrite` on a dedicated thread, so an async caller does not block the cooperative pool.
    public func rewrite(directory: String) async throws -> RewriteSummary {
        let rewriter = self
        return try await WorkerThread.run { try rewriter.rewrite(directory: directory) }
    }
}
