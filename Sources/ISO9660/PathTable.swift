/// ECMA-119 9.4: the path table lists every directory. The image has only the root,
/// so each table is a single 10-byte record pointing at the root extent.
enum PathTable {
    static let size = 10

    enum ByteOrder { case little, big }

    static func sector(rootExtent: UInt32, byteOrder: ByteOrder) -> [UInt8] {
        var sector = [UInt8](repeating: 0, count: ISO9660Image.sectorSize)
        sector[0] = 1                                  // length of directory identifier
        sector[1] = 0                                  // extended attribute record length
        switch byteOrder {
        case .little:
            sector.setLittleEndian32(rootExtent, at: 2)
            sector.setLittleEndian16(1, at: 6)         // parent directory number (root: itself)
        case .big:
            sector.setBigEndian32(rootExtent, at: 2)
            sector.setBigEndian16(1, at: 6)
        }
        sector[8] = 0x00                               // root identifier; [9] pads to even
        return sector
    }
}
