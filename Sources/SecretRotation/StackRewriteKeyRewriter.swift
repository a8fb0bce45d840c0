import StackCore
import StackRewrite

/// Key rotation through StackRewrite's one-pass engine in literal mode — the same engine
/// stack-entrypoint uses for sentinels: every regular file under the directory whatever
/// its name, streamed through a fixed buffer, a changed file replaced atomically with its
/// mode (and owner) kept. No flush here: `SecretRotator` syncs as a step of its own, so
/// its cost (it depends on whatever else is dirty on that file system) shows separately.
struct StackRewriteKeyRewriter: PublishableKeyRewriting {
    var options: RewriteOptions

    init(options: RewriteOptions = RewriteOptions(durability: .none)) {
        self.options = options
    }

    func replace(_ old: Secret, with new: Secret, under directory: String) async throws -> KeyRewriteResult {
        let rule = RewriteRule.literal(search: Array(old.unredacted.utf8), replacement: Array(new.unredacted.utf8))
        let summary: RewriteSummary
        do {
            summary = try await TreeRewriter(rule: rule, options: options).rewrite(directory: directory)
        } catch {
            throw RotationError(.rewrite, "replace the publishable key under \(directory)", underlying: error)
        }
        return KeyRewriteResult(filesScanned: summary.filesScanned, filesChanged: summary.filesChanged, occurrences: summary.tokensReplaced)
    }
}
