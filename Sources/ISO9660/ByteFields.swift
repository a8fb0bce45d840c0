// ECMA-119 stores numbers in fixed fields, little-endian (7.2.1, 7.3.1), big-endian
// (7.2.2, 7.3.2) or both, LE first (7.2.3, 7.3.3), so readers of either byte order can
// use them. These helpers write such fields into a preallocated sector buffer.

extension [UInt8] {
    mutating func setLittleEndian16(_ value: UInt16, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: value)
        self[offset + 1] = UInt8(truncatingIfNeeded: value >> 8)
    }

    mutating func setBigEndian16(_ value: UInt16, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: value >> 8)
        self[offset + 1] = UInt8(truncatingIfNeeded: value)
    }

    mutating func setLittleEndian32(_ value: UInt32, at offset: Int) {
        for index in 0..<4 { self[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
    }

    mutating func setBigEndian32(_ value: UInt32, at offset: Int) {
        for index in 0..<4 { self[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * (3 - index))) }
    }

    /// 7.2.3: 16-bit both-byte orders (4 bytes).
    mutating func setBothEndian16(_ value: UInt16, at offset: Int) {
        setLittleEndian16(value, at: offset)
        setBigEndian16(value, at: offset + 2)
    }

    /// 7.3.3: 32-bit both-byte orders (8 bytes).
    mutating func setBothEndian32(_ value: UInt32, at offset: Int) {
        setLittleEndian32(value, at: offset)
        setBigEndian32(value, at: offset + 4)
    }

    mutating func setBytes(_ bytes: [UInt8], at offset: Int) {
        replaceSubrange(offset..<(offset + bytes.count), with: bytes)
    }

    /// A text field of `length` bytes: `text` followed by `padding` units. For Joliet
    /// (UCS-2) the padding unit is the two-byte space 00 20; an odd-length field keeps a
    /// final zero byte.
    mutating func setTextField(_ text: [UInt8], at offset: Int, length: Int, padding: [UInt8]) {
        precondition(text.count <= length, "field overflow")
        setBytes(text, at: offset)
        var position = offset + text.count
        while position + padding.count <= offset + length {
            setBytes(padding, at: position)
            position += padding.count
        }
    }
}
