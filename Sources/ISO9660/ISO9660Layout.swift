/// Where everything of an image goes, computed before any byte is written:
///
/// | sectors | content |
/// |---|---|
/// | 0–15 | system area (zeros) |
/// | 16, 17, 18 | primary descriptor, Joliet supplementary descriptor, terminator |
/// | 19, 20 | ISO 9660 path tables (little-, big-endian) |
/// | 21, 22 | Joliet path tables |
/// | 23… | ISO 9660 root directory, then the Joliet root directory (one sector each unless the records need more) |
/// | then | file extents in input order, each padded to whole sectors; an empty file still reserves one |
///
/// Both directory trees point at the same file extents.
public struct ISO9660Layout: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        /// The Joliet name, as given.
        public let name: String
        /// The plain ISO 9660 identifier, e.g. `RUNTIME.ENV;1`: ASCII letters upper-cased,
        /// digits and `_` kept, anything else `_`; the last dot starts the extension;
        /// name + extension at most 30 characters (interchange level 2); a collision
        /// gets a `_N` suffix. Linux shows it lower-cased without `;1`.
        public let plainIdentifier: String
        public let firstSector: Int
        public let size: Int
    }

    /// In input order.
    public let entries: [Entry]
    public let plainDirectorySector: Int
    public let plainDirectorySectors: Int
    public let jolietDirectorySector: Int
    public let jolietDirectorySectors: Int
    /// The volume space size: the image is exactly `sectorCount * 2048` bytes.
    public let sectorCount: Int

    let identifiers: [FileIdentifier]

    static let firstDirectorySector = 23

    init(files: [ISO9660File]) throws {
        let identifiers = try FileIdentifier.assign(to: files.map(\.name))
        let dotRecords = [DirectoryRecord.length(identifierLength: 1), DirectoryRecord.length(identifierLength: 1)]
        plainDirectorySector = Self.firstDirectorySector
        plainDirectorySectors = DirectoryRecord.sectorCount(
            recordLengths: dotRecords + identifiers.map { DirectoryRecord.length(identifierLength: $0.plainBytes.count) })
        jolietDirectorySector = plainDirectorySector + plainDirectorySectors
        jolietDirectorySectors = DirectoryRecord.sectorCount(
            recordLengths: dotRecords + identifiers.map { DirectoryRecord.length(identifierLength: $0.jolietBytes.count) })

        var next = jolietDirectorySector + jolietDirectorySectors
        var entries: [Entry] = []
        for (file, identifier) in zip(files, identifiers) {
            guard file.contents.count <= Int(UInt32.max) else {
                throw ISO9660Error(.tooLarge, "file \(file.name.debugDescription) has \(file.contents.count) bytes; ISO 9660 extents hold at most 4 GiB - 1")
            }
            entries.append(Entry(name: file.name, plainIdentifier: String(decoding: identifier.plainBytes, as: UTF8.self),
                                 firstSector: next, size: file.contents.count))
            next += max(1, Self.sectors(for: file.contents.count))
        }
        guard next <= Int(UInt32.max) else {
            throw ISO9660Error(.tooLarge, "the image would need \(next) sectors; ISO 9660 addresses at most 2^32 - 1")
        }
        self.entries = entries
        self.identifiers = identifiers
        sectorCount = next
    }

    static func sectors(for byteCount: Int) -> Int {
        (byteCount + ISO9660Image.sectorSize - 1) / ISO9660Image.sectorSize
    }
}
