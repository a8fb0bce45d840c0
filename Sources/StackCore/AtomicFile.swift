import CSystem
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Replaces a file so that readers see either the old or the new content, never a
/// mix, and a crash leaves no partial file behind.
///
/// The new content goes to an unnamed `O_TMPFILE` in the destination directory
/// (a named `.<name>.tmp-XXXXXX` sibling where the filesystem cannot do that), is
/// fsynced, given a name and renamed over the destination; finally the directory is
/// fsynced so the rename itself survives a power cut. The mode is set on the open
/// descriptor before any byte is written, so secrets are never readable by others,
/// not even for a moment.
public struct AtomicFile: Sendable {
    public let path: String
    public let mode: mode_t

    public init(path: String, mode: mode_t = 0o644) {
        self.path = path
        self.mode = mode
    }

    /// Writes `bytes` as the new content of `path`.
    public func write(_ bytes: some Collection<UInt8>) throws {
        try write { fd in try POSIX.writeAll(fd, bytes, context: path) }
    }

    /// Streams the new content through `body`, which writes to the descriptor it is given.
    /// If `body` throws, the destination is untouched and no temp file remains.
    public func write(_ body: (Int32) throws -> Void) throws {
        let directory = Path.directory(of: path)
        let staged = try Staged.create(in: directory, for: path, mode: mode)
        do {
            try body(staged.fd)
            try POSIX.fsync(staged.fd, context: path)
            try staged.commit(to: path)
        } catch {
            staged.discard()
            throw error
        }
        POSIX.close(staged.fd)
        try AtomicFile.syncDirectory(directory)
    }

    /// fsync on a directory makes a completed rename durable.
    public static func syncDirectory(_ directory: String) throws {
        let fd = try POSIX.open(directory, O_RDONLY | O_DIRECTORY)
        defer { POSIX.close(fd) }
        try POSIX.fsync(fd, context: directory)
    }

    /// A not-yet-visible file in the destination's directory.
    private struct Staged {
        let fd: Int32
        /// nil for an O_TMPFILE that has no name yet.
        var temporaryPath: String?

        static func create(in directory: String, for destination: String, mode: mode_t) throws -> Staged {
            let unnamed = cs_open_tmpfile(directory, mode)
            if unnamed >= 0 {
                guard fchmod(unnamed, mode) == 0 else {
                    let code = errno
                    POSIX.close(unnamed)
                    throw StackError.systemCall("fchmod temp file for \(destination)", errno: code)
                }
                return Staged(fd: unnamed, temporaryPath: nil)
            }
            // Filesystems without O_TMPFILE (overlayfs on old kernels, tmpfs variants, macOS).
            for _ in 0..<16 {
                let candidate = Path.join(directory, ".\(Path.lastComponent(of: destination)).tmp-\(randomSuffix())")
                let fd = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
                if fd >= 0 {
                    guard fchmod(fd, mode) == 0 else {
                        let code = errno
                        close(fd)
                        unlink(candidate)
                        throw StackError.systemCall("fchmod \(candidate)", errno: code)
                    }
                    return Staged(fd: fd, temporaryPath: candidate)
                }
                if errno != EEXIST { throw StackError.systemCall("create temp file for \(destination)", errno: errno) }
            }
            throw StackError.systemCall("create temp file for \(destination)", errno: EEXIST)
        }

        /// Makes the staged file visible as `destination`; the descriptor stays open.
        func commit(to destination: String) throws {
            var named = temporaryPath
            if named == nil {
                // linkat cannot replace, so name it first, then rename atomically.
                for _ in 0..<16 {
                    let candidate = Path.join(Path.directory(of: destination), ".\(Path.lastComponent(of: destination)).tmp-\(AtomicFile.Staged.randomSuffix())")
                    let rc = cs_link_tmpfile(fd, candidate)
                    if rc == 0 { named = candidate; break }
                    if rc != -EEXIST { throw StackError.systemCall("link temp file for \(destination)", errno: -rc) }
                }
            }
            guard let named else { throw StackError.systemCall("link temp file for \(destination)", errno: EEXIST) }
            if rename(named, destination) != 0 {
                let code = errno
                unlink(named)
                throw StackError.systemCall("rename \(named) -> \(destination)", errno: code)
            }
        }

        func discard() {
            if let temporaryPath { unlink(temporaryPath) }
            POSIX.close(fd)
        }

        static func randomSuffix() -> String {
            var bytes = [UInt8](repeating: 0, count: 6)
            _ = bytes.withUnsafeMutableBytes { cs_getrandom($0.baseAddress, $0.count) }
            return Hex.encode(bytes)
        }
    }
}
