/// ECMA-119 9.1: one entry of a directory extent (also embedded in volume descriptors
/// as the root record).
struct DirectoryRecord: Sendable, Equatable {
    var extent: UInt32
    var dataLength: UInt32
    var isDirectory: Bool
    /// The recorded identifier: 0x00 for `.`, 0x01 for `..`, else name bytes.
    var identifier: [UInt8]
    var date: ISO9660Timestamp

    static let selfIdentifier: [UInt8] = [0x00]
    static let parentIdentifier: [UInt8] = [0x01]

    /// 33 fixed bytes + identifier, padded to an even length (9.1.12).
    static func length(identifierLength: Int) -> Int { 33 + identifierLength + (identifierLength % 2 == 0 ? 1 : 0) }

    var length: Int { Self.length(identifierLength: identifier.count) }

    var bytes: [UInt8] {
        var record = [UInt8](repeating: 0, count: length)
        record[0] = UInt8(length)
        record[1] = 0                                  // extended attribute record length
        record.setBothEndian32(extent, at: 2)
        record.setBothEndian32(dataLength, at: 10)
        record.setBytes(date.directoryRecordBytes, at: 18)
        record[25] = isDirectory ? 0x02 : 0x00        // file flags
        record[26] = 0                                 // file unit size (not interleaved)
        record[27] = 0                                 // interleave gap
        record.setBothEndian16(1, at: 28)              // volume sequence number
        record[32] = UInt8(identifier.count)
        record.setBytes(identifier, at: 33)
        return record
    }

    /// How many sectors a directory holding records of these lengths needs: a record
    /// never straddles a sector boundary (6.8.1.1), the rest of a sector stays zero.
    static func sectorCount(recordLengths: [Int]) -> Int {
        var sectors = 1
        var used = 0
        for length in recordLengths {
            if used + length > ISO9660Image.sectorSize {
                sectors += 1
                used = 0
            }
            used += length
        }
        return sectors
    }

    /// The directory extent: `records` packed by the rule of `sectorCount`.
    static func extent(of records: [DirectoryRecord], sectors: Int) -> [UInt8] {
        var extent = [UInt8](repeating: 0, count: sectors * ISO9660Image.sectorSize)
        var offset = 0
        for record in records {
            if offset % ISO9660Image.sectorSize + record.length > ISO9660Image.sectorSize {
                offset += ISO9660Image.sectorSize - offset % ISO9660Image.sectorSize
            }
            extent.setBytes(record.bytes, at: offset)
            offset += record.length
        }
        precondition(offset <= extent.count, "directory sector count computed too small")
        return extent
    }
}
