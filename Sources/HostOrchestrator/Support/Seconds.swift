/// Formats durations the way the orchestrator prints them: seconds with sub-second
/// precision (§5.4 #46: the shell printed whole seconds with a fake decimal).
public enum Seconds {
    /// `2.34s` (two decimals below 10 s, one above).
    public static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        if milliseconds < 10_000 {
            let hundredths = (milliseconds + 5) / 10
            return "\(hundredths / 100).\(pad(hundredths % 100, 2))s"
        }
        let tenths = (milliseconds + 50) / 100
        return "\(tenths / 10).\(tenths % 10)s"
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }
}
