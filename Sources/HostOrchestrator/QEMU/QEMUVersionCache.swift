import StackCore

/// `qemu-system-* --version`, remembered in RUN_DIR per binary (resolved path, size,
/// mtime to the nanosecond): asking costs a process start (~30 ms) on every `start`,
/// and the version is needed before launch to judge a snapshot. An upgraded binary
/// changes size or mtime and is asked again; an unreadable cache only costs that call.
public struct QEMUVersionCache: Sendable {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// The version of `qemu`, from the cache when its key still matches.
    public func version(of qemu: QEMUBinary) async throws -> String {
        let executable = try qemu.resolvedPath()
        guard let status = try FileSystem.status(executable, followLinks: true) else {
            throw HostError(.toolFailed, "\(executable) disappeared while starting")
        }
        let key = "\(executable)\t\(status.size)\t\(status.modificationSeconds).\(status.modificationNanoseconds)"
        if let text = try? FileSystem.readText(path, limit: 4096) {
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            if lines.count >= 2, lines[0] == key, !lines[1].isEmpty { return String(lines[1]) }
        }
        let version = try await qemu.version()
        // Best effort: a read-only RUN_DIR only costs the call next time.
        try? FileSystem.makeDirectory(Path.directory(of: path), mode: 0o755)
        try? AtomicFile(path: path, mode: 0o644).write(Array("\(key)\n\(version)\n".utf8))
        return version
    }
}
