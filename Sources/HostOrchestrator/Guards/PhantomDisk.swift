import StackCore

/// The 1 MiB all-zero raw files behind the snapshot layout's `seed`/`bundle` drives
/// (§4.4): they keep the virtio-blk slots of the capture-time layout. Any other size
/// or content is replaced, atomically (§4.19-13).
public enum PhantomDisk {
    public static let size = 1024 * 1024

    public static func ensure(at path: String) throws {
        if let existing = try? POSIX.readFile(path, limit: size + 1), existing.count == size, existing.allSatisfy({ $0 == 0 }) {
            return
        }
        try HostError.translating { try AtomicFile(path: path, mode: 0o644).write([UInt8](repeating: 0, count: size)) }
    }
}
