import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Tuning and safety knobs shared by `TreeCopier` and `TreeRewriter`.
public struct RewriteOptions: Sendable {
    /// When rewritten files reach the disk.
    public enum Durability: Sendable, Equatable {
        /// Rename only. Readers and failures never see a half-written file; after a
        /// power cut a file may still hold its old content (ext4's rename heuristic
        /// flushes the data of a file renamed over another, so it is never empty there).
        case none
        /// One `syncfs` after the whole pass, before returning: everything rewritten is
        /// on disk before the caller records success (the sentinel marker, rotation
        /// state). One flush instead of one per file.
        case syncFileSystemAtEnd
        /// `fsync` every rewritten file before its rename, plus the `syncfs` at the end.
        case fsyncEachFile
    }

    /// Bytes read per `read(2)`; each worker holds one such buffer (plus a token's worth).
    /// Peak memory is about `workers × bufferSize`, whatever the file sizes.
    public var bufferSize: Int
    /// Threads walking directories and working on files in parallel.
    public var workers: Int
    /// Used by in-place rewrites (the copier's destination is a scratch tree, never synced).
    public var durability: Durability
    /// Longest sentinel token (prefix included) that can be resolved; longer runs of
    /// `[A-Z_]` after the prefix are left verbatim and cost no memory.
    public var maximumTokenLength: Int
    /// Copy owner and group (only effective as root; failures are ignored).
    public var preserveOwnership: Bool
    /// Debug notes (skipped special files, replaced destination entries).
    public var logger: Logger?

    public init(bufferSize: Int = 256 * 1024,
                workers: Int = RewriteOptions.defaultWorkers,
                durability: Durability = .none,
                maximumTokenLength: Int = 4096,
                preserveOwnership: Bool = true,
                logger: Logger? = nil) {
        self.bufferSize = bufferSize
        self.workers = workers
        self.durability = durability
        self.maximumTokenLength = maximumTokenLength
        self.preserveOwnership = preserveOwnership
        self.logger = logger
    }

    /// One worker per online CPU, at most 4 (the work is I/O and memory bound).
    public static var defaultWorkers: Int {
        let online = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        return max(1, min(4, online > 0 ? online : 1))
    }

    func validated() throws -> RewriteOptions {
        guard bufferSize >= 1, workers >= 1, maximumTokenLength >= RewriteRule.sentinelPrefix.count + 2 else {
            throw RewriteError(.invalidRule, "rewrite options: bufferSize and workers must be ≥ 1, maximumTokenLength ≥ \(RewriteRule.sentinelPrefix.count + 2)")
        }
        return self
    }
}
