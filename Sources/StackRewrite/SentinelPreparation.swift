import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Steps 8 and 9 of the entrypoint in one call: make the work directory hold the
/// image tree with every sentinel replaced, and record that with the marker file.
///
/// - Work directory ≠ image tree: the tree is copied and the sentinels under `scope`
///   are replaced while copying (one read of every byte), on every start. The copy
///   restores raw sentinels, so a marker left from an earlier start is ignored
///   (removed before copying, written again after): §5.4 #35.
/// - Work directory = image tree (the emulator): replaced in place unless the marker
///   says it was done; the rewritten files are flushed (`syncfs`) before the marker is
///   written, so a marker never outlives the substitution it vouches for.
///
/// Finding no sentinel at all is a normal outcome, not an error (§5.4 #36).
public struct SentinelPreparation: Sendable {
    public struct Configuration: Sendable {
        /// The tree baked into the image (`/app`).
        public var imageDirectory: String
        /// `STACK_RUNTIME_WORK_DIR`; created if missing.
        public var workDirectory: String
        /// Directory, relative to the work directory, whose files hold sentinels.
        public var scope: String
        /// Marker file name inside the work directory.
        public var markerName: String
        public var values: SentinelValues
        public var options: RewriteOptions

        public init(imageDirectory: String = "/app", workDirectory: String, scope: String = "apps",
                    markerName: String = ".stack-sentinels-replaced", values: SentinelValues,
                    options: RewriteOptions = RewriteOptions(durability: .syncFileSystemAtEnd)) {
            self.imageDirectory = imageDirectory
            self.workDirectory = workDirectory
            self.scope = scope
            self.markerName = markerName
            self.values = values
            self.options = options
        }

        public var markerPath: String { Path.join(workDirectory, markerName) }
    }

    public enum Outcome: Sendable, Equatable {
        /// In place, and the marker was there: nothing scanned.
        case alreadyReplaced
        /// In place: sentinels replaced, marker written.
        case replacedInPlace(RewriteSummary)
        /// Copied into the work directory with sentinels replaced, marker written.
        case copied(CopySummary)

        /// The substitution's numbers, when one ran.
        public var rewrite: RewriteSummary? {
            switch self {
            case .alreadyReplaced: nil
            case .replacedInPlace(let summary): summary
            case .copied(let summary): summary.rewrite
            }
        }
    }

    public var configuration: Configuration

    public init(_ configuration: Configuration) {
        self.configuration = configuration
    }

    public func run() throws -> Outcome {
        let c = configuration
        try wrapped("create directory \(c.workDirectory)", path: c.workDirectory) { try POSIX.makeDirectories(c.workDirectory) }
        let rule = RewriteRule.sentinels(c.values)
        if try Self.isSameDirectory(c.imageDirectory, c.workDirectory) {
            if POSIX.exists(c.markerPath) { return .alreadyReplaced }
            let scopeDirectory = Path.join(c.workDirectory, c.scope)
            var summary = RewriteSummary()
            if POSIX.exists(scopeDirectory) {
                summary = try TreeRewriter(rule: rule, options: c.options).rewrite(directory: scopeDirectory)
            } else {
                c.options.logger?.warning("no \(c.scope) directory in the work directory: no sentinels to replace", metadata: ["path": "\(scopeDirectory)"])
            }
            try writeMarker()
            return .replacedInPlace(summary)
        }
        if unlink(c.markerPath) != 0 && errno != ENOENT {
            throw RewriteError.systemCall("remove the stale marker", path: c.markerPath, errno: errno)
        }
        let summary = try TreeCopier(options: c.options).copy(from: c.imageDirectory, to: c.workDirectory, rewriting: rule, within: c.scope)
        try writeMarker()
        return .copied(summary)
    }

    /// `run` on a dedicated thread, so an async caller does not block the cooperative pool.
    public func run() async throws -> Outcome {
        let preparation = self
        return try await WorkerThread.run { try preparation.run() }
    }

    private func writeMarker() throws {
        let path = configuration.markerPath
        try wrapped("write marker \(path)", path: path) { try AtomicFile(path: path, mode: 0o644).write([UInt8]()) }
    }

    private func wrapped(_ what: String, path: String, _ body: () throws -> Void) throws {
        do { try body() } catch let error as StackError {
            throw RewriteError(.systemCall, "\(what): \(error.message)", path: path, errno: error.errno)
        }
    }

    /// Whether two paths name the same directory (same device and inode), so a
    /// symlinked or differently spelled work directory is still recognised as /app.
    public static func isSameDirectory(_ first: String, _ second: String) throws -> Bool {
        var a = stat(), b = stat()
        guard stat(first, &a) == 0 else { throw RewriteError.systemCall("stat", path: first, errno: errno) }
        guard stat(second, &b) == 0 else { throw RewriteError.systemCall("stat", path: second, errno: errno) }
        return a.st_dev == b.st_dev && a.st_ino == b.st_ino
    }
}
