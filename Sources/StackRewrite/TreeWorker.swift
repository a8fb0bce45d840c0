import CSystem
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The per-thread half of a `TreeWalk`: copies or rewrites one file or symlink at a
/// time with its own buffer and engine. Lives on one thread only.
final class TreeWorker {
    private let walk: TreeWalk
    private let index: Int
    private let engine: StreamRewriter?
    /// The buffer for plain copies: the engine's, or one of our own.
    private let scratch: UnsafeMutableRawBufferPointer
    private let ownsScratch: Bool
    private var summary = CopySummary()
    private var temporaryCounter = 0

    init(walk: TreeWalk, index: Int) {
        self.walk = walk
        self.index = index
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

    func process(_ job: TreeWalk.Job) throws {
        switch (walk.mode, job.kind) {
        case (.copy, .file): try copyFile(job.name, in: job.directory)
        case (.copy, .symlink): try copySymlink(job.name, in: job.directory)
        case (.inPlace, .file): try rewriteInPlace(job.name, in: job.directory)
        case (.inPlace, .symlink): break
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

        let output = try createDestinationFile(name, in: directory)
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
        try walk.apply(FileAttributes(status), to: output, path: directory.destinationPath(of: name))
        closed = true
        if close(output) != 0 && errno != EINTR {
            throw RewriteError.systemCall("write", path: directory.destinationPath(of: name), errno: errno)
        }
        summary.filesCopied += 1
        summary.bytesCopied += size
    }

    /// A new, empty file for the copy. Whatever is in the way (an old copy, a symlink,
    /// a directory) is removed first rather than written through: an old copy may be a
    /// hard link to the source itself, and a symlink may point out of the tree.
    private func createDestinationFile(_ name: FileName, in directory: DirectoryHandle) throws -> Int32 {
        let flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC
        var output = FileSystem.openAt(directory.destination, name, flags, 0o600)
        if output == -EEXIST {
            try FileSystem.remove(directory.destination, name, path: directory.destinationPath(of: name))
            output = FileSystem.openAt(directory.destination, name, flags, 0o600)
        }
        guard output >= 0 else { throw RewriteError.systemCall("create", path: directory.destinationPath(of: name), errno: -output) }
        return output
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
            var attributes = status
            attributes.st_mode &= 0o7777
            try staged.finish(owner: walk.changesOwnership ? (status.st_uid, status.st_gid) : nil, mode: attributes.st_mode,
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
            throw RewriteError.systemCall("create a temporary file in", path: directory.sourcePath, errno: -unnamed)
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
                throw RewriteError.systemCall("create a temporary file in", path: directory.sourcePath, errno: -named)
            }
            attempt += 1
        }
    }

    /// Hidden, short (long original names must not overflow NAME_MAX) and unique per
    /// process, worker and file.
    private static func temporaryName(worker: Int, counter: Int, attempt: Int) -> FileName {
        FileName(".stack-rewrite.\(getpid()).\(worker).\(counter).\(attempt)")
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
