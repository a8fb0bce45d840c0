/// Copies the content of a directory into another, like `cp -a source/. destination`,
/// optionally sending the files of one subtree through a `RewriteRule` on the way.
///
/// - Regular files: content, mode, owner (as root) and access/modification times.
///   Whatever is in the destination's way is replaced, never written through.
/// - Symlinks: recreated with the same target text; never followed, wherever they
///   point (outside the tree, nowhere).
/// - Directories: created (or reused), then given the source's mode and times.
/// - FIFOs, sockets, devices: skipped with a debug note.
///
/// Files outside the rewrite scope are copied in the kernel (copy_file_range); files
/// inside it are read once, scanned and written rewritten, so a copy plus sentinel
/// substitution costs about one copy (§1.2 steps 8–9, §5.4 #35, #36).
public struct TreeCopier: Sendable {
    public var options: RewriteOptions

    public init(options: RewriteOptions = RewriteOptions()) {
        self.options = options
    }

    /// Copies `source`'s content into `destination` (created if missing).
    ///
    /// - Parameters:
    ///   - rule: applied to regular files under `scope`; nil copies verbatim.
    ///   - scope: a directory relative to `source` (e.g. `"apps"`) whose files go through
    ///     `rule`; nil for every file.
    /// - Throws: `RewriteError` naming the first entry that failed; the files already
    ///   copied stay (the destination is a scratch copy made again on the next run).
    public func copy(from source: String, to destination: String, rewriting rule: RewriteRule? = nil,
                     within scope: String? = nil) throws -> CopySummary {
        try TreeWalk(mode: .copy(destination: destination), source: source, rule: rule, scope: scope, options: options).run()
    }

    /// `copy` on a dedicated thread, so an async caller does not block the cooperative pool.
    public func copy(from source: String, to destination: String, rewriting rule: RewriteRule? = nil,
                     within scope: String? = nil) async throws -> CopySummary {
        let copier = self
        return try await WorkerThread.run { try copier.copy(from: source, to: destination, rewriting: rule, within: scope) }
    }
}
