import CSystem
import Logging
import StackCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One pass over a source tree: the calling thread lists directories (and, when
/// copying, creates them); worker threads copy or rewrite the files and symlinks it
/// queues. Shared by `TreeCopier` and `TreeRewriter`.
final class TreeWalk: Sendable {
    enum Mode: Sendable {
        case copy(destination: String)
        case inPlace
    }

    struct Job: Sendable {
        enum Kind: Sendable { case file, symlink }
        let kind: Kind
        let directory: DirectoryHandle
        let name: FileName
    }

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
    private let lateFailure = Mutex<(any Error)?>(nil)
    private let finished = Mutex<[WorkerReport]>([])

    /// What one thread did.
    struct WorkerReport: Sendable {
        var summary = CopySummary()
        var replacedNames = Set<String>()
        var unresolvedNames = Set<String>()
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
    }

    func run() throws -> CopySummary {
        let clock = ContinuousClock()
        let start = clock.now
        // Enough queued jobs to keep workers busy while the walker lists a directory;
        // few enough to bound the descriptors held open by queued jobs.
        let queue = WorkQueue<Job>(capacity: 128 * options.workers)
        let threads = (0..<options.workers).map { index in
            WorkerThread.start { [self] in work(queue, index: index) }
        }
        var report = WorkerReport()
        do {
            try walk(queue, report: &report)
        } catch {
            queue.fail(error)
        }
        queue.close()
        threads.forEach(WorkerThread.join)
        if let failure = queue.firstFailure { throw failure }
        if let failure = lateFailure.withLock({ $0 }) { throw failure }

        var replaced = Set<String>(), unresolved = Set<String>()
        var summary = report.summary
        for worker in finished.withLock({ $0 }) {
            summary.filesCopied += worker.summary.filesCopied
            summary.bytesCopied += worker.summary.bytesCopied
            summary.symlinks += worker.summary.symlinks
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

    // MARK: worker threads

    private func work(_ queue: WorkQueue<Job>, index: Int) {
        let worker = TreeWorker(walk: self, index: index)
        while let job = queue.pop() {
            do {
                try worker.process(job)
            } catch {
                queue.fail(error)
                break
            }
        }
        let report = worker.report()
        finished.withLock { $0.append(report) }
    }

    /// Failures found outside a job (setting a directory's attributes when its last
    /// job finished).
    func recordLateFailure(_ error: any Error) {
        lateFailure.withLock { if $0 == nil { $0 = error } }
    }

    // MARK: the walk

    private struct Frame {
        let directory: DirectoryHandle
        let entries: [DirectoryEntry]
        var next = 0
    }

    /// Identity of the destination root, so a destination inside the source is not
    /// copied into itself.
    private struct Identity: Equatable {
        let device: UInt
        let inode: UInt
        init(_ st: stat) {
            device = UInt(st.st_dev)
            inode = UInt(st.st_ino)
        }
    }

    private func walk(_ queue: WorkQueue<Job>, report: inout WorkerReport) throws {
        let (root, destinationIdentity) = try openRoots()
        var stack = [Frame(directory: root, entries: try FileSystem.list(root.source, path: root.sourcePath))]
        while let top = stack.indices.last {
            guard stack[top].next < stack[top].entries.count else {
                stack.removeLast()
                continue
            }
            let entry = stack[top].entries[stack[top].next]
            stack[top].next += 1
            let parent = stack[top].directory

            var type = Int(entry.type)
            if type == Int(DT_UNKNOWN) {
                guard let st = try FileSystem.linkStatus(parent.source, entry.name, path: parent.sourcePath(of: entry.name)) else { continue }
                type = FileSystem.isDirectory(st) ? Int(DT_DIR) : FileSystem.isRegular(st) ? Int(DT_REG)
                    : FileSystem.isSymlink(st) ? Int(DT_LNK) : Int(DT_FIFO)
            }
            switch type {
            case Int(DT_DIR):
                guard let child = try openChild(entry.name, in: parent, destinationIdentity: destinationIdentity) else { continue }
                if child.destination >= 0 { report.summary.directories += 1 }
                stack.append(Frame(directory: child, entries: try FileSystem.list(child.source, path: child.sourcePath)))
            case Int(DT_REG):
                guard queue.push(Job(kind: .file, directory: parent, name: entry.name)) else { return }
            case Int(DT_LNK):
                // Symlinks are copied as symlinks and never followed, in either mode.
                if case .copy = mode {
                    guard queue.push(Job(kind: .symlink, directory: parent, name: entry.name)) else { return }
                }
            default:
                report.summary.specialFilesSkipped += 1
                options.logger?.debug("skipping special file (FIFO, socket or device)", metadata: ["path": "\(parent.sourcePath(of: entry.name))"])
            }
        }
    }

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
        let destination: Int32
        let destinationStatus: stat
        do {
            do { try POSIX.makeDirectories(destinationPath) } catch let error as StackError {
                throw RewriteError(.systemCall, "create directory \(destinationPath): \(error.message)", path: destinationPath, errno: error.errno)
            }
            destination = open(destinationPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard destination >= 0 else { throw RewriteError.systemCall("open directory", path: destinationPath, errno: errno) }
            destinationStatus = try FileSystem.status(of: destination, path: destinationPath)
        } catch {
            close(source)
            throw error
        }
        do {
            if Identity(sourceStatus) == Identity(destinationStatus) {
                throw RewriteError(.invalidTree, "cannot copy \(sourceRoot) onto itself (\(destinationPath) is the same directory); rewrite it in place instead",
                                   path: destinationPath)
            }
            try ensureWritable(destination, status: destinationStatus, path: destinationPath)
        } catch {
            close(source)
            close(destination)
            throw error
        }
        let handle = DirectoryHandle(source: source, destination: destination, sourcePath: sourceRoot, destinationPath: destinationPath,
                                     relativePath: "", rewrites: scope == nil, attributes: FileAttributes(sourceStatus), walk: self)
        return (handle, Identity(destinationStatus))
    }

    /// Opens a subdirectory of the source and, when copying, creates or reuses its copy.
    /// nil when it vanished or must be skipped.
    private func openChild(_ name: FileName, in parent: DirectoryHandle, destinationIdentity: Identity?) throws -> DirectoryHandle? {
        let sourcePath = parent.sourcePath(of: name)
        let relativePath = parent.relativePath.isEmpty ? name.display : parent.relativePath + "/" + name.display
        let rewrites = parent.rewrites || relativePath == scope
        let source = FileSystem.openAt(parent.source, name, FileSystem.directoryOpenFlags)
        if source == -ENOENT || source == -ENOTDIR || source == -ELOOP { return nil } // changed since listed
        guard source >= 0 else { throw RewriteError.systemCall("open directory", path: sourcePath, errno: -source) }
        guard let destinationIdentity else {
            return DirectoryHandle(source: source, destination: -1, sourcePath: sourcePath, destinationPath: "",
                                   relativePath: relativePath, rewrites: rewrites, attributes: nil, walk: self)
        }
        var destination: Int32 = -1
        do {
            let sourceStatus = try FileSystem.status(of: source, path: sourcePath)
            if Identity(sourceStatus) == destinationIdentity {
                options.logger?.debug("not copying the destination into itself", metadata: ["path": "\(sourcePath)"])
                close(source)
                return nil
            }
            let destinationPath = parent.destinationPath(of: name)
            var created = name.withCString { mkdirat(parent.destination, $0, 0o700) } == 0
            if !created && errno != EEXIST { throw RewriteError.systemCall("create directory", path: destinationPath, errno: errno) }
            destination = FileSystem.openAt(parent.destination, name, FileSystem.directoryOpenFlags)
            if destination == -ENOTDIR || destination == -ELOOP {
                // A file or symlink is where the directory goes: replace it, never follow it.
                options.logger?.debug("replacing a non-directory in the destination", metadata: ["path": "\(destinationPath)"])
                try FileSystem.remove(parent.destination, name, path: destinationPath)
                guard name.withCString({ mkdirat(parent.destination, $0, 0o700) }) == 0 else {
                    throw RewriteError.systemCall("create directory", path: destinationPath, errno: errno)
                }
                created = true
                destination = FileSystem.openAt(parent.destination, name, FileSystem.directoryOpenFlags)
            }
            guard destination >= 0 else { throw RewriteError.systemCall("open directory", path: destinationPath, errno: -destination) }
            if !created {
                let destinationStatus = try FileSystem.status(of: destination, path: destinationPath)
                if Identity(destinationStatus) == Identity(sourceStatus) {
                    throw RewriteError(.invalidTree, "\(destinationPath) is the same directory as \(sourcePath); cannot copy onto itself", path: destinationPath)
                }
                try ensureWritable(destination, status: destinationStatus, path: destinationPath)
            }
            return DirectoryHandle(source: source, destination: destination, sourcePath: sourcePath, destinationPath: destinationPath,
                                   relativePath: relativePath, rewrites: rewrites, attributes: FileAttributes(sourceStatus), walk: self)
        } catch {
            close(source)
            if destination >= 0 { close(destination) }
            throw error
        }
    }

    /// A copy made earlier from a read-only source directory is read-only too; open it
    /// up while filling it (its final mode is set again when done).
    private func ensureWritable(_ fd: Int32, status: stat, path: String) throws {
        guard status.st_mode & 0o700 != 0o700, userID != 0 else { return }
        guard fchmod(fd, (status.st_mode & 0o7777) | 0o700) == 0 else {
            throw RewriteError.systemCall("make writable", path: path, errno: errno)
        }
    }

    // MARK: attributes

    /// Owner (as root), mode and times of a copied file or directory.
    func apply(_ attributes: FileAttributes, to fd: Int32, path: @autoclosure () -> String) throws {
        if changesOwnership && (attributes.owner != userID || attributes.group != groupID) {
            // Best effort: ids unmapped in a user namespace cannot be given away.
            if fchown(fd, attributes.owner, attributes.group) != 0 && errno != EPERM && errno != EINVAL {
                throw RewriteError.systemCall("set owner of", path: path(), errno: errno)
            }
        }
        guard fchmod(fd, attributes.mode & 0o7777) == 0 else { throw RewriteError.systemCall("set mode of", path: path(), errno: errno) }
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
