import CSystem
import Logging
import StackCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One pass over a source tree, shared by `TreeCopier` and `TreeRewriter`.
///
/// Every worker thread takes tasks from one LIFO stack: open a subdirectory (creating
/// its copy), list a directory (queueing its subdirectories and batches of its
/// files), or handle a batch of files and symlinks. Directories are therefore walked,
/// created and filled in parallel, with one queue operation per directory or batch
/// rather than per file.
final class TreeWalk: Sendable {
    enum Mode: Sendable {
        case copy(destination: String)
        case inPlace
    }

    enum Task: Sendable {
        case open(parent: DirectoryHandle, name: FileName)
        case list(DirectoryHandle)
        case entries(DirectoryHandle, ArraySlice<DirectoryEntry>)
    }

    /// Files handled per task: big enough to amortise the queue, small enough that a
    /// huge directory is shared between workers.
    static let batchSize = 64

    let mode: Mode
    let sourceRoot: String
    let rule: RewriteRule?
    /// Relative directory whose subtree goes through the rule; nil for everything.
    let scope: String?
    let options: RewriteOptions
    let kernelCopy = KernelCopySupport()
    /// Set owner and group of copies (root only).
    let changesOwnership: Bool
    let userID: uid_t
    let groupID: gid_t
    /// The umask, when known: files whose mode survives it are created with their
    /// final mode, saving an fchmod each.
    let umask: mode_t?
    private let lateFailure = Mutex<(any Error)?>(nil)
    private let finished = Mutex<[WorkerReport]>([])

    /// What one thread did.
    struct WorkerReport: Sendable {
        var summary = CopySummary()
        var replacedNames = Set<String>()
        var unresolvedNames = Set<String>()
    }

    /// Identity of a directory (device, inode).
    struct Identity: Equatable, Sendable {
        let device: UInt
        let inode: UInt
        init(_ st: stat) {
            device = UInt(st.st_dev)
            inode = UInt(st.st_ino)
        }
    }

    init(mode: Mode, source: String, rule: RewriteRule?, scope: String?, options: RewriteOptions) throws {
        self.mode = mode
        self.sourceRoot = TreeWalk.trimmed(source)
        self.rule = try rule?.validated()
        self.scope = scope.map(TreeWalk.trimmed).flatMap { $0.isEmpty || $0 == "." ? nil : $0 }
        self.options = try options.validated()
        userID = geteuid()
        groupID = getegid()
        changesOwnership = options.preserveOwnership && userID == 0
        let mask = cs_current_umask()
        umask = mask >= 0 ? mode_t(mask) : nil
    }

    func run() throws -> CopySummary {
        let clock = ContinuousClock()
        let start = clock.now
        let tasks = TaskStack<Task>()
        let destinationIdentity: Identity?
        do {
            let (root, identity) = try openRoots()
            destinationIdentity = identity
            tasks.push(.list(root))
        }
        let threads = (0..<options.workers).map { index in
            OSThread.joinable { [self] in work(tasks, index: index, destinationIdentity: destinationIdentity) }
        }
        threads.forEach { $0.join() }
        if let failure = tasks.firstFailure { throw failure }
        if let failure = lateFailure.withLock({ $0 }) { throw failure }

        var replaced = Set<String>(), unresolved = Set<String>()
        var summary = CopySummary()
        for worker in finished.withLock({ $0 }) {
            summary.filesCopied += worker.summary.filesCopied
            summary.bytesCopied += worker.summary.bytesCopied
            summary.directories += worker.summary.directories
            summary.symlinks += worker.summary.symlinks
            summary.specialFilesSkipped += worker.summary.specialFilesSkipped
            summary.rewrite.filesScanned += worker.summary.rewrite.filesScanned
            summary.rewrite.filesChanged += worker.summary.rewrite.filesChanged
            summary.rewrite.tokensReplaced += worker.summary.rewrite.tokensReplaced
            summary.rewrite.bytesRead += worker.summary.rewrite.bytesRead
            replaced.formUnion(worker.replacedNames)
            unresolved.formUnion(worker.unresolvedNames)
        }
        summary.rewrite.replacedNames = replaced.sorted()
        summary.rewrite.unresolvedNames = unresolved.sorted()
        if case .inPlace = mode, options.durability != .none, summary.rewrite.filesChanged > 0 {
            try syncFileSystem(of: sourceRoot)
        }
        summary.elapsed = clock.now - start
        summary.rewrite.elapsed = summary.elapsed
        return summary
    }

    private func work(_ tasks: TaskStack<Task>, index: Int, destinationIdentity: Identity?) {
        let worker = TreeWorker(walk: self, index: index, tasks: tasks, destinationIdentity: destinationIdentity)
        while let task = tasks.pop() {
            do {
                try worker.process(task)
            } catch {
                tasks.fail(error)
            }
            tasks.finished()
        }
        let report = worker.report()
        finished.withLock { $0.append(report) }
    }

    /// Failures found outside a task (setting a directory's attributes when the last
    /// task using it finished).
    func recordLateFailure(_ error: any Error) {
        lateFailure.withLock { if $0 == nil { $0 = error } }
    }

    // MARK: roots

    private func openRoots() throws -> (DirectoryHandle, Identity?) {
        let source = open(sourceRoot, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard source >= 0 else { throw RewriteError.systemCall("open directory", path: sourceRoot, errno: errno) }
        let sourceStatus: stat
        do { sourceStatus = try FileSystem.status(of: source, path: sourceRoot) } catch { close(source); throw error }
        guard case .copy(let destinationRoot) = mode else {
            let handle = DirectoryHandle(source: source, destination: -1, sourcePath: sourceRoot, destinationPath: "",
                                         relativePath: "", rewrites: scope == nil, attributes: nil, walk: self)
            return (handle, nil)
        }
        let destinationPath = TreeWalk.trimmed(destinationRoot)
        var destination: Int32 = -1
        do {
            do { try POSIX.makeDirectories(destinationPath) } catch let error as StackError {
                throw RewriteError(.systemCall, "create directory \(destinationPath): \(error.message)", path: destinationPath, errno: error.errno)
            }
            destination = open(destinationPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard destination >= 0 else { throw RewriteError.systemCall("open directory", path: destinationPath, errno: errno) }
            let destinationStatus = try FileSystem.status(of: destination, path: destinationPath)
            if Identity(sourceStatus) == Identity(destinationStatus) {
                throw RewriteError(.invalidTree, "cannot copy \(sourceRoot) onto itself (\(destinationPath) is the same directory); rewrite it in place instead",
                                   path: destinationPath)
            }
            try ensureWritable(destination, status: destinationStatus, path: destinationPath)
            let handle = DirectoryHandle(source: source, destination: destination, sourcePath: sourceRoot, destinationPath: destinationPath,
                                         relativePath: "", rewrites: scope == nil, attributes: FileAttributes(sourceStatus), walk: self)
            return (handle, Identity(destinationStatus))
        } catch {
            close(source)
            if destination >= 0 { close(destination) }
            throw error
        }
    }

    /// A copy made earlier from a read-only source directory is read-only too; open it
    /// up while filling it (its final mode is set again when done).
    func ensureWritable(_ fd: Int32, status: stat, path: String) throws {
        guard status.st_mode & 0o700 != 0o700, userID != 0 else { return }
        guard fchmod(fd, (status.st_mode & 0o7777) | 0o700) == 0 else {
            throw RewriteError.systemCall("make writable", path: path, errno: errno)
        }
    }

    // MARK: attributes

    /// The mode to create a copy with, and whether it still needs an fchmod (special
    /// bits, bits the umask removes, or an unknown umask).
    func creationMode(for mode: mode_t) -> (mode: mode_t, needsChmod: Bool) {
        let permissions = mode & 0o7777
        guard let umask, permissions & 0o7000 == 0, permissions & umask == 0 else { return (0o600, true) }
        return (permissions, false)
    }

    /// Owner (as root), mode and times of a copied file or directory.
    /// `setMode: false` only when the file already has the mode (never for set-id
    /// files, whose bits chown would clear). `owner`: the copy's current owner.
    func apply(_ attributes: FileAttributes, to fd: Int32, setMode: Bool = true, owner: (uid_t, gid_t)? = nil,
               path: @autoclosure () -> String) throws {
        let current = owner ?? (userID, groupID)
        if changesOwnership && (attributes.owner != current.0 || attributes.group != current.1) {
            // Best effort: ids unmapped in a user namespace cannot be given away.
            if fchown(fd, attributes.owner, attributes.group) != 0 && errno != EPERM && errno != EINVAL {
                throw RewriteError.systemCall("set owner of", path: path(), errno: errno)
            }
        }
        if setMode {
            guard fchmod(fd, attributes.mode & 0o7777) == 0 else { throw RewriteError.systemCall("set mode of", path: path(), errno: errno) }
        }
        var times = attributes.times
        let rc = withUnsafePointer(to: &times) { $0.withMemoryRebound(to: timespec.self, capacity: 2) { futimens(fd, $0) } }
        guard rc == 0 else { throw RewriteError.systemCall("set times of", path: path(), errno: errno) }
    }

    private func syncFileSystem(of path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw RewriteError.systemCall("open directory", path: path, errno: errno) }
        defer { close(fd) }
        let rc = cs_syncfs(fd)
        guard rc == 0 else { throw RewriteError.systemCall("sync file system of", path: path, errno: -rc) }
    }

    static func trimmed(_ path: String) -> String {
        var result = Substring(path)
        while result.count > 1 && result.hasSuffix("/") { result.removeLast() }
        while result.hasPrefix("./") { result.removeFirst(2) }
        return String(result)
    }
}
