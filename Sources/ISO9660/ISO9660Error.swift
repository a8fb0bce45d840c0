/// The one error the ISO9660 module throws. The module makes no system calls, so
/// there is no `errno`: every failure is a property of the input, named in `message`.
public struct ISO9660Error: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A file name cannot be stored as a Joliet identifier (see `ISO9660File.name`).
        public static let invalidFileName = Code("invalid-file-name")
        /// Two files have the same Joliet name.
        public static let duplicateFileName = Code("duplicate-file-name")
        /// The volume identifier is empty, longer than 32 characters or not d-characters.
        public static let invalidVolumeIdentifier = Code("invalid-volume-identifier")
        /// A file or the whole image exceeds what 32-bit ISO 9660 fields can address.
        public static let tooLarge = Code("too-large")
        /// The recording date cannot be expressed in ISO 9660 date fields (years 1900–2155).
        public static let dateOutOfRange = Code("date-out-of-range")
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
