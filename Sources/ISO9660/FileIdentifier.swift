/// The two identifiers a file gets: an ECMA-119 one for the plain view and a Joliet
/// one (UCS-2 big-endian) for the view Linux, Windows and macOS prefer.
struct FileIdentifier: Sendable, Equatable {
    /// Name and extension without separators, d-characters only (for sorting).
    let plainName: [UInt8]
    let plainExtension: [UInt8]
    /// UTF-16 code units of the original name (all in the BMP, so UCS-2).
    let jolietUnits: [UInt16]

    /// The recorded plain identifier: `NAME.EXT;1` (ECMA-119 7.5.1 keeps the `.` even
    /// when the extension is empty).
    var plainBytes: [UInt8] { plainName + [UInt8(ascii: ".")] + plainExtension + Array(";1".utf8) }

    var jolietBytes: [UInt8] { jolietUnits.flatMap { [UInt8(truncatingIfNeeded: $0 >> 8), UInt8(truncatingIfNeeded: $0)] } }

    /// Joliet's own limit (the SVD convention); longer names need non-standard reader support.
    static let maximumJolietUnits = 64
    /// Interchange level 2 (ECMA-119 10.2): name plus extension at most 30 characters.
    static let maximumPlainCharacters = 30

    /// Assigns identifiers to `names` in order. Joliet names must be valid as given
    /// (see `ISO9660File.name`); plain names are derived and made unique.
    static func assign(to names: [String]) throws -> [FileIdentifier] {
        var seenJoliet = Set<[UInt16]>()
        var usedPlain = Set<[UInt8]>()
        var result: [FileIdentifier] = []
        for name in names {
            let units = try jolietUnits(for: name)
            // Compare code units, not Strings: Swift's String equality is canonical
            // equivalence, while two differently normalised names are distinct files.
            guard seenJoliet.insert(units).inserted else {
                throw ISO9660Error(.duplicateFileName, "two files are named \(name.debugDescription); names in one directory must differ")
            }
            let (plainName, plainExtension) = uniquePlainName(for: name, used: &usedPlain)
            result.append(FileIdentifier(plainName: plainName, plainExtension: plainExtension, jolietUnits: units))
        }
        return result
    }

    static func jolietUnits(for name: String) throws -> [UInt16] {
        let units = Array(name.utf16)
        func reject(_ problem: String) -> ISO9660Error {
            ISO9660Error(.invalidFileName, "file name \(name.debugDescription) \(problem)")
        }
        guard !units.isEmpty else { throw reject("is empty") }
        guard units.count <= maximumJolietUnits else {
            throw reject("is \(units.count) UTF-16 code units long; Joliet allows at most \(maximumJolietUnits)")
        }
        if units.contains(where: { (0xD800...0xDFFF).contains($0) }) {
            throw reject("contains a character outside the Unicode Basic Multilingual Plane; Joliet names are UCS-2")
        }
        if units.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
            throw reject("contains a control character")
        }
        if let forbidden = units.first(where: { Array("*/:;?\\".utf16).contains($0) }) {
            throw reject("contains \(String(decoding: [forbidden], as: UTF16.self).debugDescription), which Joliet forbids")
        }
        guard name != ".", name != ".." else { throw reject("is reserved for directory links") }
        guard units.last != UInt16(UInt8(ascii: ".")) else {
            throw reject("ends with a dot, which Linux strips from Joliet names (the file would appear renamed)")
        }
        return units
    }

    /// Maps `name` to d-characters: ASCII letters upper-cased, digits and `_` kept,
    /// everything else `_`. The last dot separates the extension. Too-long names are
    /// truncated (name first) and a collision gets a `_N` suffix, so every name maps.
    static func uniquePlainName(for name: String, used: inout Set<[UInt8]>) -> ([UInt8], [UInt8]) {
        let scalars = Array(name.unicodeScalars)
        var baseScalars = scalars[...]
        var extensionScalars = scalars[scalars.endIndex...]
        if let dot = scalars.lastIndex(of: ".") {
            baseScalars = scalars[..<dot]
            extensionScalars = scalars[(dot + 1)...]
        }
        var base = baseScalars.map(dCharacter)
        let fileExtension = Array(extensionScalars.map(dCharacter).prefix(maximumPlainCharacters - min(base.count, 1)))
        base = Array(base.prefix(maximumPlainCharacters - fileExtension.count))
        if base.isEmpty && fileExtension.isEmpty { base = [UInt8(ascii: "_")] }

        var candidate = (base, fileExtension)
        var counter = 0
        while !used.insert(candidate.0 + [UInt8(ascii: ".")] + candidate.1).inserted {
            counter += 1
            let suffix = Array("_\(counter)".utf8)
            let shortenedExtension = Array(fileExtension.prefix(maximumPlainCharacters - suffix.count))
            let room = maximumPlainCharacters - shortenedExtension.count - suffix.count
            candidate = (Array(base.prefix(room)) + suffix, shortenedExtension)
        }
        return candidate
    }

    private static func dCharacter(_ scalar: Unicode.Scalar) -> UInt8 {
        switch scalar {
        case "A"..."Z", "0"..."9", "_": return UInt8(scalar.value)
        case "a"..."z": return UInt8(scalar.value) - 0x20
        default: return UInt8(ascii: "_")
        }
    }

    /// ECMA-119 9.3: by name, then extension, each padded with spaces (0x20) to the
    /// longer length, then by version, descending (always 1 here).
    static func plainOrder(_ lhs: FileIdentifier, _ rhs: FileIdentifier) -> Bool {
        let byName = paddedCompare(lhs.plainName, rhs.plainName, padding: 0x20)
        if byName != 0 { return byName < 0 }
        return paddedCompare(lhs.plainExtension, rhs.plainExtension, padding: 0x20) < 0
    }

    /// Joliet has no normative ordering; like genisoimage and libisofs, sort by UCS-2
    /// code unit values of the whole name (a proper prefix first).
    static func jolietOrder(_ lhs: FileIdentifier, _ rhs: FileIdentifier) -> Bool {
        lhs.jolietUnits.lexicographicallyPrecedes(rhs.jolietUnits)
    }

    private static func paddedCompare<T: FixedWidthInteger>(_ lhs: [T], _ rhs: [T], padding: T) -> Int {
        for index in 0..<max(lhs.count, rhs.count) {
            let left = index < lhs.count ? lhs[index] : padding
            let right = index < rhs.count ? rhs[index] : padding
            if left != right { return left < right ? -1 : 1 }
        }
        return 0
    }
}
