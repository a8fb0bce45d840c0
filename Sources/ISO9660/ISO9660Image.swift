/// A CD-ROM image with a root directory of regular files, readable both as plain
/// ISO 9660 (interchange level 2 names) and through Joliet (names as given): the
/// STACKCFG disk handed to the VM (§4.5). Pure function of its input: the same files,
/// label and date always give the same bytes.
///
/// ```swift
/// let image = ISO9660Image(files: [ISO9660File(name: "runtime.env", contents: bytes)],
///                          recordingDate: try ISO9660Timestamp(unixSeconds: Int64(time(nil))))
/// try image.write { chunk in try POSIX.writeAll(fd, chunk, context: "write \(path)") }
/// ```
public struct ISO9660Image: Sendable, Equatable {
    public static let sectorSize = 2048

    /// d-characters (`A`–`Z`, `0`–`9`, `_`), 1–32 of them.
    public var volumeIdentifier: String
    /// The root directory's files. Their data is laid out in this order; the directory
    /// records are sorted (ECMA-119 9.3 for the plain view, code unit order for Joliet).
    public var files: [ISO9660File]
    /// Recorded in every directory record and as creation/modification date.
    public var recordingDate: ISO9660Timestamp

    public init(volumeIdentifier: String = "STACKCFG", files: [ISO9660File], recordingDate: ISO9660Timestamp) {
        self.volumeIdentifier = volumeIdentifier
        self.files = files
        self.recordingDate = recordingDate
    }

    /// Validates names and the label and assigns sectors; throws `ISO9660Error`.
    public func layout() throws -> ISO9660Layout {
        try validateVolumeIdentifier()
        return try ISO9660Layout(files: files)
    }

    /// The whole image.
    public func bytes() throws -> [UInt8] {
        let layout = try layout()
        var image: [UInt8] = []
        image.reserveCapacity(layout.sectorCount * Self.sectorSize)
        try write(layout) { image.append(contentsOf: $0) }
        return image
    }

    /// Streams the image to `sink` in order (metadata in one chunk, then each file's
    /// data and its padding), without building it in memory. Errors from `sink` are
    /// rethrown unchanged; validation failures are thrown before `sink` is first called.
    public func write(to sink: (ArraySlice<UInt8>) throws -> Void) throws {
        try write(try layout(), to: sink)
    }

    private func write(_ layout: ISO9660Layout, to sink: (ArraySlice<UInt8>) throws -> Void) throws {
        try sink(metadata(layout)[...])
        for (file, entry) in zip(files, layout.entries) {
            try sink(file.contents[...])
            let padding = max(1, ISO9660Layout.sectors(for: entry.size)) * Self.sectorSize - entry.size
            try sink([UInt8](repeating: 0, count: padding)[...])
        }
    }

    /// Sectors 0 up to the first file extent.
    private func metadata(_ layout: ISO9660Layout) -> [UInt8] {
        let plainRoot = root(at: layout.plainDirectorySector, sectors: layout.plainDirectorySectors)
        let jolietRoot = root(at: layout.jolietDirectorySector, sectors: layout.jolietDirectorySectors)
        let volumeSpaceSize = UInt32(layout.sectorCount)

        var metadata = [UInt8](repeating: 0, count: 16 * Self.sectorSize)
        metadata += VolumeDescriptor.sector(.primary, .init(
            volumeIdentifier: volumeIdentifier, volumeSpaceSize: volumeSpaceSize,
            littleEndianPathTable: 19, bigEndianPathTable: 20, root: plainRoot, date: recordingDate))
        metadata += VolumeDescriptor.sector(.joliet, .init(
            volumeIdentifier: volumeIdentifier, volumeSpaceSize: volumeSpaceSize,
            littleEndianPathTable: 21, bigEndianPathTable: 22, root: jolietRoot, date: recordingDate))
        metadata += VolumeDescriptor.terminator
        metadata += PathTable.sector(rootExtent: plainRoot.extent, byteOrder: .little)
        metadata += PathTable.sector(rootExtent: plainRoot.extent, byteOrder: .big)
        metadata += PathTable.sector(rootExtent: jolietRoot.extent, byteOrder: .little)
        metadata += PathTable.sector(rootExtent: jolietRoot.extent, byteOrder: .big)

        let entries = Array(zip(layout.identifiers, layout.entries))
        let plainFiles = entries.sorted { FileIdentifier.plainOrder($0.0, $1.0) }
            .map { fileRecord($0.1, identifier: $0.0.plainBytes) }
        metadata += DirectoryRecord.extent(of: dotRecords(plainRoot) + plainFiles, sectors: layout.plainDirectorySectors)
        let jolietFiles = entries.sorted { FileIdentifier.jolietOrder($0.0, $1.0) }
            .map { fileRecord($0.1, identifier: $0.0.jolietBytes) }
        metadata += DirectoryRecord.extent(of: dotRecords(jolietRoot) + jolietFiles, sectors: layout.jolietDirectorySectors)
        precondition(metadata.count == (layout.jolietDirectorySector + layout.jolietDirectorySectors) * Self.sectorSize)
        return metadata
    }

    private func root(at sector: Int, sectors: Int) -> DirectoryRecord {
        DirectoryRecord(extent: UInt32(sector), dataLength: UInt32(sectors * Self.sectorSize), isDirectory: true,
                        identifier: DirectoryRecord.selfIdentifier, date: recordingDate)
    }

    /// The root's parent is the root itself (6.8.2.2).
    private func dotRecords(_ root: DirectoryRecord) -> [DirectoryRecord] {
        var parent = root
        parent.identifier = DirectoryRecord.parentIdentifier
        return [root, parent]
    }

    private func fileRecord(_ entry: ISO9660Layout.Entry, identifier: [UInt8]) -> DirectoryRecord {
        DirectoryRecord(extent: UInt32(entry.firstSector), dataLength: UInt32(entry.size), isDirectory: false,
                        identifier: identifier, date: recordingDate)
    }

    private func validateVolumeIdentifier() throws {
        let valid = !volumeIdentifier.isEmpty && volumeIdentifier.utf8.count <= 32
            && volumeIdentifier.unicodeScalars.allSatisfy { ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
        guard valid else {
            throw ISO9660Error(.invalidVolumeIdentifier,
                               "volume identifier \(volumeIdentifier.debugDescription) must be 1–32 characters of A–Z, 0–9 and _")
        }
    }
}
