import StackCore

/// Identifies a base image cheaply (it is gigabytes): size and modification time to
/// the nanosecond. A pulled or rebuilt image changes it; reading it never does (QEMU
/// opens a backing file read-only). Stored next to a cold-boot overlay
/// (`base-image.fingerprint`) and in snapshot metadata.
public struct BaseImageFingerprint: Sendable, Equatable, Hashable, Codable, CustomStringConvertible {
    public let size: Int64
    public let modificationSeconds: Int64
    public let modificationNanoseconds: Int64

    public init(size: Int64, modificationSeconds: Int64, modificationNanoseconds: Int64) {
        self.size = size
        self.modificationSeconds = modificationSeconds
        self.modificationNanoseconds = modificationNanoseconds
    }

    /// Throws a message suggesting `stack emulator pull` when the image is missing.
    public static func of(_ path: String) throws -> BaseImageFingerprint {
        guard let status = try FileSystem.status(path, followLinks: true), status.isRegularFile else {
            throw HostError(.malformedFile, "Base image not found at \(path); run `stack emulator pull` (or build it with build-image.sh) first")
        }
        return BaseImageFingerprint(size: status.size, modificationSeconds: status.modificationSeconds,
                                    modificationNanoseconds: status.modificationNanoseconds)
    }

    /// `size:seconds.nanoseconds`, e.g. `2147483648:1732880000.123456789`.
    public var description: String {
        let nanos = String(modificationNanoseconds)
        return "\(size):\(modificationSeconds).\(String(repeating: "0", count: max(0, 9 - nanos.count)))\(nanos)"
    }

    public init?(parsing text: String) {
        let parts = text.trimmingWhitespace.split(separator: ":")
        guard parts.count == 2, let size = Int64(parts[0]) else { return nil }
        let time = parts[1].split(separator: ".")
        guard time.count == 2, time[1].count == 9, let seconds = Int64(time[0]), let nanos = Int64(time[1]) else { return nil }
        self.init(size: size, modificationSeconds: seconds, modificationNanoseconds: nanos)
    }

    /// Writes the fingerprint file kept next to a cold-boot overlay (no newline).
    public func write(to path: String) throws {
        try HostError.translating { try AtomicFile(path: path, mode: 0o644).write(Array(description.utf8)) }
    }

    /// The fingerprint stored at `path`; nil when missing or unreadable.
    public static func stored(at path: String) -> BaseImageFingerprint? {
        (try? FileSystem.readText(path, limit: 256)).flatMap { BaseImageFingerprint(parsing: $0) }
    }
}
