/// ECMA-119 8: the descriptors at sectors 16, 17, 18. The primary one (8.4) carries
/// the plain view; the supplementary one (8.5) with escape sequence `%/E` announces
/// Joliet UCS-2 level 3, whose text fields are UCS-2 big-endian.
enum VolumeDescriptor {
    enum Kind {
        case primary
        case joliet
    }

    struct Fields {
        var volumeIdentifier: String
        var volumeSpaceSize: UInt32
        var littleEndianPathTable: UInt32
        var bigEndianPathTable: UInt32
        var root: DirectoryRecord
        var date: ISO9660Timestamp
    }

    static let standardIdentifier = Array("CD001".utf8)
    static let jolietLevel3EscapeSequence: [UInt8] = [0x25, 0x2F, 0x45]   // "%/E"

    static func sector(_ kind: Kind, _ fields: Fields) -> [UInt8] {
        var sector = [UInt8](repeating: 0, count: ISO9660Image.sectorSize)
        sector[0] = kind == .primary ? 1 : 2
        sector.setBytes(standardIdentifier, at: 1)
        sector[6] = 1                                                // descriptor version

        func text(_ string: String, at offset: Int, length: Int) {
            switch kind {
            case .primary:
                sector.setTextField(Array(string.utf8), at: offset, length: length, padding: [0x20])
            case .joliet:
                let ucs2 = string.utf16.flatMap { [UInt8(truncatingIfNeeded: $0 >> 8), UInt8(truncatingIfNeeded: $0)] }
                sector.setTextField(ucs2, at: offset, length: length, padding: [0x00, 0x20])
            }
        }

        text("", at: 8, length: 32)                                  // system identifier
        text(fields.volumeIdentifier, at: 40, length: 32)
        sector.setBothEndian32(fields.volumeSpaceSize, at: 80)
        if kind == .joliet { sector.setBytes(jolietLevel3EscapeSequence, at: 88) }
        sector.setBothEndian16(1, at: 120)                           // volume set size
        sector.setBothEndian16(1, at: 124)                           // volume sequence number
        sector.setBothEndian16(UInt16(ISO9660Image.sectorSize), at: 128)
        sector.setBothEndian32(UInt32(PathTable.size), at: 132)
        sector.setLittleEndian32(fields.littleEndianPathTable, at: 140)
        sector.setBigEndian32(fields.bigEndianPathTable, at: 148)
        sector.setBytes(fields.root.bytes, at: 156)
        text("", at: 190, length: 128)                               // volume set identifier
        text("", at: 318, length: 128)                               // publisher
        text("", at: 446, length: 128)                               // data preparer
        text("", at: 574, length: 128)                               // application
        text("", at: 702, length: 37)                                // copyright file
        text("", at: 739, length: 37)                                // abstract file
        text("", at: 776, length: 37)                                // bibliographic file
        sector.setBytes(fields.date.volumeDescriptorBytes, at: 813)  // creation
        sector.setBytes(fields.date.volumeDescriptorBytes, at: 830)  // modification
        sector.setBytes(ISO9660Timestamp.unspecifiedVolumeDescriptorBytes, at: 847)  // expiration
        sector.setBytes(ISO9660Timestamp.unspecifiedVolumeDescriptorBytes, at: 864)  // effective
        sector[881] = 1                                              // file structure version
        return sector
    }

    /// 8.3: type 255 ends the descriptor set.
    static let terminator: [UInt8] = {
        var sector = [UInt8](repeating: 0, count: ISO9660Image.sectorSize)
        sector[0] = 255
        sector.setBytes(standardIdentifier, at: 1)
        sector[6] = 1
        return sector
    }()
}
