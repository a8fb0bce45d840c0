/// One regular file of the image's root directory.
public struct ISO9660File: Sendable, Equatable {
    /// The name as the Joliet view shows it (what Linux mounts expose). Rules, checked by
    /// `ISO9660Image.layout()`: 1–64 UTF-16 code units, Basic Multilingual Plane only
    /// (Joliet is UCS-2), no control characters, none of `* / : ; ? \`, not `.`/`..`, and
    /// no trailing `.` (Linux strips trailing dots from Joliet names, so the file would
    /// appear under another name). The plain ISO 9660 name is derived, never rejected:
    /// interchange level 2 d-characters (see `ISO9660Layout.Entry.plainIdentifier`).
    public var name: String
    public var contents: [UInt8]

    public init(name: String, contents: [UInt8]) {
        self.name = name
        self.contents = contents
    }
}
