import CSystem
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The per-thread half of a `TreeWalk`: opens and lists directories, copies or
/// rewrites files and symlinks, with its own buffers and engine. Lives on one thread.
final class TreeWorker {
    private let walk: TreeWalk
    private let index: Int
    private let tasks: TaskStack<TreeWalk.Task>
    private let destinationIdentity: TreeWalk.Identity?
    private let engine: StreamRewriter?
    /// The buffer for plain copies: the engine's, or one of our own.
    private let scratch: UnsafeMutableRawBufferPointer
    private let ownsScratch: Bool
    private let listing = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 8)
    private var summary = CopySummary()
    private var temporaryCounter = 0

    init(walk: TreeWalk, index: Int, tasks: TaskStack<TreeWalk.Task>, destinationIdentity: TreeWalk.Identity?) {
        self.walk = walk
        self.index = index
        self.tasks = tasks
        self.destinationIdentity = destinationIdentity
        if let rule = walk.rule {
            let engine = StreamRewriter(rule: rule, bufferSize: walk.options.bufferSize, maximumTokenLength: walk.options.maximumTokenLength)
            self.engine = engine
            scratch = engine.scratch
            ownsScratch = false
        } else {
            engine = nil
            scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: walk.options.bufferSize, alignment: 64)
            ownsScratch = true
        }
    }

    deinit {
        if ownsScratch { scratch.deallocate() }
        listing.deallocate()
    }

    func report() -> TreeWalk.WorkerReport {
        var report = TreeWalk.WorkerReport(summary: summary)
        if let engine {
            let names = engine.namesSeen()
            report.replacedNames = names.replaced
            report.unresolvedNames = names.unresolved
        }
        return report
    }

    func process(_ task: TreeWalk.Task) throws {
        switch task {
        case .open(let parent, let name):
            guard let directory = try openChild(name, in: parent) else { return }
            try list(directory)
        case .list(let directory):
            try list(directory)
        case .entries(let directory, let entries):
            try handle(entries, in: directory)
        }
    }

    // MARK: directories

    /// Queues the subdirectories and all but the first batch of entries, then handles
    /// that batch here.
    private func list(_ directory: DirectoryHandle) throws {
        let entries = try FileSystem.list(directory.source, buffer: listing, path: directory.sourcePath)
        var subdirectories: [TreeWalk.Task] = []
        var others: [DirectoryEntry] = []
        others.reserveCapacity(entries.count)
        for entry in entries {
            if Int(entry.type) == Int(DT_DIR) {
                subdirectories.append(.open(parent: directory, name: entry.name))
            } else {
                others.append(entry)
            }
        }
        tasks.push(contentsOf: subdirectories)
        let batches = stride(from: 0, to: others.count, by: TreeWalk.batchSize).map {
            others[$0..<min($0 + TreeWalk.batchSize, others.count)]
        }
        if batches.count > 1 { tasks.push(contentsOf: batches.dropFirst().map { .entries(directory, $0) }) }
        if let first = batches.first { try handle(first, in: directory) }
    }

    private func handle(_ entries: ArraySlice<DirectoryEntry>, in directory: DirectoryHandle) throws {
        for entry in entries {
            var type = Int(entry.type)
            if type == Int(DT_UNKNOWN) {
                // File systems that do not report types in readdir.
                guard let st = try FileSystem.linkStatus(directory.source, entry.name, path: directory.sourcePath(of: entry.name)) else { continue }
                type = FileSystem.isDirectory(st) ? Int(DT_DIR) : FileSystem.isRegular(st) ? Int(DT_REG)
                    : FileSystem.isSymlink(st) ? Int(DT_LNK) : Int(DT_FIFO)
            }
            switch (type, walk.mode) {
            case (Int(DT_DIR), _):
                tasks.push(.open(parent: directory, name: entry.name))
            case (Int(DT_REG), .copy):
                try copyFile(entry.name, in: directory)
            case (Int(DT_REG), .inPlace):
                try rewriteInPlace(entry.name, in: directory)
            case (Int(DT_LNK), .copy):
                try copySymlink(entry.name, in: directory)
            case (Int(DT_LNK), .inPlace):
                break // never followed
            default:
                summary.specialFilesSkipped += 1
                walk.options.logger?.debug("skipping special file (FIFO, socket or device)", metadata: ["path": "\(directory.sourcePath(of: entry.name))"])
            }
        }
    }

    /// Opens a subdirectory of the source and, when copying, creates or reuses its copy.
    /// nil when it vanished or must be skipped.
    private func openChild(_ name: FileName, in parent: DirectoryHandle) throws -> DirectoryHandle? {
        let sourcePath = parent.sourcePath(of: name)
        let relativePath = parent.relativePath.isEmpty ? name.display : parent.relativePath + "/" + name.display
        let rewrites = parent.rewrites || relativePath == walk.scope
        let source = FileSystem.openAt(parent.source, name, FileSystem.directoryOpenFlags)
        if source == -ENOENT || source == -ENOTDIR || source == -ELOOP { return nil } // changed since listed
        guard source >= 0 else { throw RewriteError.systemCall("open directory", path: sourcePath, errno: -source) }
        guard let destinationIdentity else {
            return DirectoryHandle(source: source, destination: -1, sourcePath: sourcePath, destinationPath: "",
                                   relativePath: relativePath, rewrites: rewrites, attributes: nil, walk: walk)
        }
        var destination: Int32 = -1
        do {
            let sourceStatus = try FileSystem.status(of: source, path: sourcePath)
            if TreeWalk.Identity(sourceStatus) == destinationIdentity {
                walk.options.logger?.debug("not copying the destination into itself", metadata: ["path": "\(sourcePath)"])
                close(source)
                return nil
            }
            let destinationPath = parent.destinationPath(of: name)
            var created = name.withCString { mkdirat(parent.destination, $0, 0o700) } == 0
            if !created && errno != EEXIST { throw RewriteError.systemCall("create directory", path: destinationPath, errno: errno) }
            destination = FileSystem.openAt(parent.destination, name, FileSystem.directoryOpenFlags)
            if destination == -ENOTDIR || destination == -ELOOP {
                // A file or symlink is where the directory goes: replace it, never follow it.
                walk.options.logger?.debug("replacing a non-directory in the destination", metadata: ["path": "\(destinationPath)"])
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
                if TreeWalk.Identity(destinationStatus) == TreeWalk.Identity(sourceStatus) {
                    throw RewriteError(.invalidTree, "\(destinationPath) is the same directory as \(sourcePath); cannot copy onto itself", path: destinationPath)
                }
                try walk.ensureWritable(destination, status: destinationStatus, path: destinationPath)
            }
            summary.directories += 1
            return DirectoryHandle(source: source, destination: destination, sourcePath: sourcePath, destinationPath: destinationPath,
                                   relativePath: relativePath, rewrites: rewrites, attributes: FileAttributes(sourceStatus), walk: walk)
        } catch {
            close(source)
            if destination >= 0 { close(destination) }
            throw error
        }
    }

    // MARK: copying

    private func copyFile(_ name: FileName, in directory: DirectoryHandle) throws {
        let input = FileSystem.openAt(directory.source, name, FileSystem.fileOpenFlags)
        if input == -ENOENT { return } // removed since listed
        guard input >= 0 else { throw RewriteError.systemCall("open", path: directory.sourcePath(of: name), errno: -input) }
        defer { close(input) }
        let status = try FileSystem.status(of: input, path: directory.sourcePath(of: name))
        guard FileSystem.isRegular(status) else { return } // replaced by something else since listed

        let destination = try openDestinationFile(name, in: directory, source: status)
        let output = destination.fd
        var closed = false
        defer { if !closed { close(output) } }
        let size = Int64(status.st_size)
        if directory.rewrites, let engine {
            let result = try engine.rewrite(input: input, offset: 0, remaining: size, output: output,
                                            inputPath: { directory.sourcePath(of: name) }, outputPath: { directory.destinationPath(of: name) })
            summary.rewrite.filesScanned += 1
            summary.rewrite.bytesRead += result.bytesRead
            if result.replacements > 0 {
                summary.rewrite.filesChanged += 1
                summary.rewrite.tokensReplaced += result.replacements
            }
        } else if size > 0 {
            _ = try FileSystem.copyData(from: input, to: output, count: size, scratch: scratch, kernelCopy: walk.kernelCopy,
                                        inputPath: directory.sourcePath(of: name), outputPath: directory.destinationPath(of: name))
        }
        try walk.apply(FileAttributes(status), to: output, setMode: destination.needsChmod, owner: destination.owner,
                       path: directory.destinationPath(of: name))
        closed = true
        if close(output) != 0 && errno != EINTR {
            throw RewriteError.systemCall("write", path: directory.destinationPath(of: name), errno: errno)
        }
        summary.filesCopied += 1
        summary.bytesCopied += size
    }

    /// An empty regular file for the copy, ready to write.
    ///
    /// A fresh file is created with its final mode when the umask allows (the
    /// descriptor can write even when that mode is read-only). An earlier copy is
    /// reused and truncated, which on a restart avoids freeing and reallocating every
    /// inode (ext4 then scans past recently deleted inodes for each new one), but only
    /// when it is a plain file with a single link that is not the source itself;
    /// anything else in the way (symlink, directory, hard link, a file we may not
    /// write) is removed, never written through.
    private func openDestinationFile(_ name: FileName, in directory: DirectoryHandle, source: stat) throws
        -> (fd: Int32, needsChmod: Bool, owner: (uid_t, gid_t)) {
        let path = directory.destinationPath(of: name)
        let creation = walk.creationMode(for: source.st_mode)
        let create = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC
        var fd = FileSystem.openAt(directory.destination, name, create, creation.mode)
        if fd >= 0 { return (fd, creation.needsChmod, (walk.userID, walk.groupID)) }
        guard fd == -EEXIST else { throw RewriteError.systemCall("create", path: path, errno: -fd) }

        let existing = FileSystem.openAt(directory.destination, name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        if existing >= 0 {
            var st = stat()
            if fstat(existing, &st) == 0, FileSystem.isRegular(st), st.st_nlink == 1,
               TreeWalk.Identity(st) != TreeWalk.Identity(source), ftruncate(existing, 0) == 0 {
                let needsChmod = st.st_mode & 0o7777 != source.st_mode & 0o7777 || source.st_mode & 0o7000 != 0
                return (existing, needsChmod, (st.st_uid, st.st_gid))
            }
            close(existing)
        }
        try FileSystem.remove(directory.destination, name, path: path)
        fd = FileSystem.openAt(directory.destination, name, create, creation.mode)
        guard fd >= 0 else { throw RewriteError.systemCall("create", path: path, errno: -fd) }
        return (fd, creation.needsChmod, (walk.userID, walk.groupID))
    }

    private func copySymlink(_ name: FileName, in directory: DirectoryHandle) throws {
        let sourcePath = directory.sourcePath(of: name)
        guard let status = try FileSystem.linkStatus(directory.source, name, path: sourcePath), FileSystem.isSymlink(status) else { return }
        let target = try FileSystem.readLink(directory.source, name, path: sourcePath)
        let destinationPath = directory.destinationPath(of: name)
        var rc = target.withUnsafeBufferPointer { link in name.withCString { symlinkat(link.baseAddress!, directory.destination, $0) } }
        if rc != 0 && errno == EEXIST {
            let existing = try? FileSystem.readLink(directory.destination, name, path: destinationPath)
            if existing == target {
                rc = 0
            } else {
                try FileSystem.remove(directory.destination, name, path: destinationPath)
                rc = target.withUnsafeBufferPointer { link in name.withCString { symlinkat(link.baseAddress!, directory.destination, $0) } }
            }
        }
        guard rc == 0 else { throw RewriteError.systemCall("create symlink", path: destinationPath, errno: errno) }

        let attributes = FileAttributes(status)
        if walk.changesOwnership && (attributes.owner != walk.userID || attributes.group != walk.groupID) {
            let owned = name.withCString { fchownat(directory.destination, $0, attributes.owner, attributes.group, AT_SYMLINK_NOFOLLOW) }
            if owned != 0 && errno != EPERM && errno != EINVAL {
                throw RewriteError.systemCall("set owner of", path: destinationPath, errno: errno)
            }
        }
        var times = attributes.times
        let timed = withUnsafePointer(to: &times) { pair in
            pair.withMemoryRebound(to: timespec.self, capacity: 2) { times in
                name.withCString { utimensat(directory.destination, $0, times, AT_SYMLINK_NOFOLLOW) }
            }
        }
        guard timed == 0 else { throw RewriteError.systemCall("set times of", path: destinationPath, errno: errno) }
        summary.symlinks += 1
    }

    // MARK: rewriting in place

    private func rewriteInPlace(_ name: FileName, in directory: DirectoryHandle) throws {
        guard let engine else { return }
        let path = directory.sourcePath(of: name)
        let input = FileSystem.openAt(directory.source, name, FileSystem.fileOpenFlags)
        if input == -ENOENT { return }
        guard input >= 0 else { throw RewriteError.systemCall("open", path: path, errno: -input) }
        defer { close(input) }
        let status = try FileSystem.status(of: input, path: path)
        guard FileSystem.isRegular(status) else { return }
        let size = Int64(status.st_size)

        summary.rewrite.filesScanned += 1
        let scan = try engine.scan(input: input, offset: 0, remaining: size, inputPath: { path })
        summary.rewrite.bytesRead += scan.bytesRead
        guard let firstChange = scan.firstChange else { return } // unchanged: not touched at all

        var staged = try StagedFile(in: directory, for: name, worker: index, counter: &temporaryCounter)
        do {
            let result: StreamRewriter.Result
            if let buffered = scan.bufferedWholeFile {
                result = try engine.rewrite(input: input, offset: 0, remaining: 0, preloaded: buffered, output: staged.fd,
                                            inputPath: { path }, outputPath: { path })
            } else {
                // Bytes before the first change go through the kernel; the rest through the engine.
                guard lseek(input, 0, SEEK_SET) == 0 else { throw RewriteError.systemCall("read", path: path, errno: errno) }
                let copied = try FileSystem.copyData(from: input, to: staged.fd, count: firstChange, scratch: engine.scratch,
                                                     kernelCopy: walk.kernelCopy, inputPath: path, outputPath: path)
                result = try engine.rewrite(input: input, offset: copied, remaining: size - copied, output: staged.fd,
                                            inputPath: { path }, outputPath: { path })
                summary.rewrite.bytesRead += result.bytesRead
            }
            // The new file is ours; give it the original's owner (as root) and mode.
            let foreignOwner = walk.changesOwnership && (status.st_uid != walk.userID || status.st_gid != walk.groupID)
            try staged.finish(owner: foreignOwner ? (status.st_uid, status.st_gid) : nil, mode: status.st_mode & 0o7777,
                              fsync: walk.options.durability == .fsyncEachFile)
            try staged.commit()
            summary.rewrite.filesChanged += 1
            summary.rewrite.tokensReplaced += result.replacements
        } catch {
            staged.discard()
            throw error
        }
    }
}

private let processID = getpid()

/// The new content of a file being rewritten in place: an unnamed O_TMPFILE in the
/// same directory (a named hidden file where the file system cannot do that), renamed
/// over the original only once complete, so readers and failures never see a
/// half-written file.
private struct StagedFile {
    let fd: Int32
    let directory: DirectoryHandle
    let name: FileName
    /// Set once the file has a name in the directory.
    private(set) var temporaryName: FileName?
    private let worker: Int
    private let counterStart: Int

    init(in directory: DirectoryHandle, for name: FileName, worker: Int, counter: inout Int) throws {
        self.directory = directory
        self.name = name
        self.worker = worker
        counter += 1
        counterStart = counter
        let unnamed = cs_openat_tmpfile(directory.source, 0o600)
        if unnamed >= 0 {
            fd = unnamed
            temporaryName = nil
            return
        }
        guard unnamed == -EOPNOTSUPP || unnamed == -EISDIR || unnamed == -EINVAL else {
            throw RewriteError.systemCall("create a temporary file to rewrite", path: directory.sourcePath(of: name), errno: -unnamed)
        }
        var attempt = 0
        while true {
            let candidate = StagedFile.temporaryName(worker: worker, counter: counterStart, attempt: attempt)
            let named = FileSystem.openAt(directory.source, candidate, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if named >= 0 {
                fd = named
                temporaryName = candidate
                return
            }
            guard named == -EEXIST, attempt < 100 else {
                throw RewriteError.systemCall("create a temporary file to rewrite", path: directory.sourcePath(of: name), errno: -named)
            }
            attempt += 1
        }
    }

    /// Hidden, short (long original names must not overflow NAME_MAX) and unique per
    /// process, worker and file.
    private static func temporaryName(worker: Int, counter: Int, attempt: Int) -> FileName {
        FileName(".stack-rewrite.\(processID).\(worker).\(counter).\(attempt)")
    }

    func finish(owner: (uid_t, gid_t)?, mode: mode_t, fsync shouldSync: Bool) throws {
        let path = directory.sourcePath(of: name)
        if let owner, fchown(fd, owner.0, owner.1) != 0 && errno != EPERM && errno != EINVAL {
            throw RewriteError.systemCall("set owner of the rewritten", path: path, errno: errno)
        }
        guard fchmod(fd, mode) == 0 else { throw RewriteError.systemCall("set mode of the rewritten", path: path, errno: errno) }
        if shouldSync {
            while fsync(fd) != 0 {
                if errno != EINTR { throw RewriteError.systemCall("fsync the rewritten", path: path, errno: errno) }
            }
        }
    }

    mutating func commit() throws {
        let path = directory.sourcePath(of: name)
        if temporaryName == nil {
            var attempt = 0
            while true {
                let candidate = StagedFile.temporaryName(worker: worker, counter: counterStart, attempt: attempt)
                let rc = candidate.withCString { cs_linkat_tmpfile(fd, directory.source, $0) }
                if rc == 0 { temporaryName = candidate; break }
                guard rc == -EEXIST, attempt < 100 else { throw RewriteError.systemCall("name the rewritten copy of", path: path, errno: -rc) }
                attempt += 1
            }
        }
        let renamed = temporaryName!.withCString { from in name.withCString { to in renameat(directory.source, from, directory.source, to) } }
        guard renamed == 0 else { throw RewriteError.systemCall("replace", path: path, errno: errno) }
        temporaryName = nil
        // Every byte went through write(2), which reported any error; nothing is left
        // to fail here, and after the rename there is nothing to undo.
        close(fd)
    }

    func discard() {
        if let temporaryName { _ = temporaryName.withCString { unlinkat(directory.source, $0, 0) } }
        close(fd)
    }
}
