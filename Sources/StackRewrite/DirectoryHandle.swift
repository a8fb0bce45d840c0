#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Mode, owner and times of a source entry, to put on its copy.
struct FileAttributes: Sendable {
    let mode: mode_t
    let owner: uid_t
    let group: gid_t
    let accessSeconds: Int
    let accessNanoseconds: Int
    let modificationSeconds: Int
    let modificationNanoseconds: Int

    init(_ st: stat) {
        mode = st.st_mode
        owner = st.st_uid
        group = st.st_gid
        accessSeconds = st.st_atim.tv_sec
        accessNanoseconds = st.st_atim.tv_nsec
        modificationSeconds = st.st_mtim.tv_sec
        modificationNanoseconds = st.st_mtim.tv_nsec
    }

    var times: (timespec, timespec) {
        (timespec(tv_sec: accessSeconds, tv_nsec: accessNanoseconds),
         timespec(tv_sec: modificationSeconds, tv_nsec: modificationNanoseconds))
    }
}

/// An open source directory (and its copy), shared by every task for an entry in it.
///
/// Tasks name their entry relative to these descriptors (`openat`), which is both
/// faster than resolving full paths and immune to a path component being swapped for
/// a symlink mid-walk. The descriptors close when the last task holding them is done
/// (batches of its files, the opening of its subdirectories); nothing more is created
/// in the copy after that, so its mode and times are set then (creating an entry
/// would change the directory's mtime again).
final class DirectoryHandle: Sendable {
    let source: Int32
    /// -1 when rewriting in place.
    let destination: Int32
    /// Paths for messages.
    let sourcePath: String
    let destinationPath: String
    /// Relative to the roots; "" for the roots themselves.
    let relativePath: String
    /// Whether regular files directly in here go through the rule.
    let rewrites: Bool
    /// Applied to `destination` when the last task is done.
    let attributes: FileAttributes?
    let walk: TreeWalk

    init(source: Int32, destination: Int32, sourcePath: String, destinationPath: String, relativePath: String,
         rewrites: Bool, attributes: FileAttributes?, walk: TreeWalk) {
        self.source = source
        self.destination = destination
        self.sourcePath = sourcePath
        self.destinationPath = destinationPath
        self.relativePath = relativePath
        self.rewrites = rewrites
        self.attributes = attributes
        self.walk = walk
    }

    deinit {
        if destination >= 0 {
            if let attributes {
                do {
                    try walk.apply(attributes, to: destination, path: destinationPath)
                } catch {
                    walk.recordLateFailure(error)
                }
            }
            close(destination)
        }
        close(source)
    }

    func sourcePath(of name: FileName) -> String { sourcePath + "/" + name.display }
    func destinationPath(of name: FileName) -> String { destinationPath + "/" + name.display }
}
