/// A UTC instant with the precision ISO 9660 records (whole seconds). The writer never
/// reads a clock: callers pass "now" or a fixed date, so the same input gives the same bytes.
public struct ISO9660Timestamp: Sendable, Equatable {
    public let year: Int
    public let month: Int
    public let day: Int
    public let hour: Int
    public let minute: Int
    public let second: Int

    /// Validates the calendar fields. Years outside 1900–2155 are rejected because the
    /// directory record stores "years since 1900" in one byte.
    public init(year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0, second: Int = 0) throws {
        guard (1900...2155).contains(year) else {
            throw ISO9660Error(.dateOutOfRange, "ISO 9660 dates must lie in the years 1900–2155, got \(year)")
        }
        guard (1...12).contains(month), (1...Self.daysInMonth(month, year: year)).contains(day),
              (0...23).contains(hour), (0...59).contains(minute), (0...59).contains(second) else {
            throw ISO9660Error(.dateOutOfRange, "not a valid UTC date and time: \(year)-\(month)-\(day) \(hour):\(minute):\(second)")
        }
        self.year = year
        self.month = month
        self.day = day
        self.hour = hour
        self.minute = minute
        self.second = second
    }

    /// The UTC calendar time of `unixSeconds` (seconds since 1970-01-01T00:00:00Z), e.g.
    /// `time(nil)` for "now".
    public init(unixSeconds: Int64) throws {
        let days = unixSeconds >= 0 ? unixSeconds / 86_400 : (unixSeconds - 86_399) / 86_400
        let secondOfDay = Int(unixSeconds - days * 86_400)
        // Days → civil date (Howard Hinnant's algorithm; eras of 400 years).
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        guard (1900...2155).contains(year) else {
            throw ISO9660Error(.dateOutOfRange, "ISO 9660 dates must lie in the years 1900–2155, got Unix time \(unixSeconds)")
        }
        try self.init(year: Int(year), month: Int(month), day: Int(day),
                      hour: secondOfDay / 3600, minute: secondOfDay / 60 % 60, second: secondOfDay % 60)
    }

    /// ECMA-119 9.1.5: seven binary bytes, the last being the offset from GMT (0 = UTC).
    var directoryRecordBytes: [UInt8] {
        [UInt8(year - 1900), UInt8(month), UInt8(day), UInt8(hour), UInt8(minute), UInt8(second), 0]
    }

    /// ECMA-119 8.4.26.1: "YYYYMMDDHHMMSScc" as digits, then the GMT offset byte.
    var volumeDescriptorBytes: [UInt8] {
        let digits = Self.digits(year, 4) + Self.digits(month, 2) + Self.digits(day, 2)
            + Self.digits(hour, 2) + Self.digits(minute, 2) + Self.digits(second, 2) + Self.digits(0, 2)
        return digits + [0]
    }

    /// ECMA-119 8.4.26.1: "not specified" is sixteen `0` digits and a zero offset.
    static let unspecifiedVolumeDescriptorBytes: [UInt8] = [UInt8](repeating: UInt8(ascii: "0"), count: 16) + [0]

    private static func digits(_ value: Int, _ count: Int) -> [UInt8] {
        var result = [UInt8](repeating: UInt8(ascii: "0"), count: count)
        var rest = value
        for index in stride(from: count - 1, through: 0, by: -1) {
            result[index] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
        }
        return result
    }

    private static func daysInMonth(_ month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}
