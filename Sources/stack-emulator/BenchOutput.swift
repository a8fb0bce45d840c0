#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import HostOrchestrator

/// `bench`'s report: the total and each phase, in seconds with millisecond precision.
struct BenchOutput: Encodable {
    struct PhaseTime: Encodable {
        let phase: String
        let seconds: Double
    }

    let path: String
    let totalSeconds: Double
    let phases: [PhaseTime]
    let snapshotSkipped: String?

    enum CodingKeys: String, CodingKey {
        case path, phases
        case totalSeconds = "total_seconds"
        case snapshotSkipped = "snapshot_skipped"
    }

    init(_ report: Emulator.StartReport) {
        path = report.path.rawValue
        totalSeconds = BenchOutput.seconds(report.total)
        phases = report.phases.map { PhaseTime(phase: $0.phase.rawValue, seconds: BenchOutput.seconds($0.duration)) }
        snapshotSkipped = report.snapshotSkipped
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return ((Double(seconds) + Double(attoseconds) / 1e18) * 1000).rounded() / 1000
    }

    func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    func lines() -> [String] {
        var lines = ["Startup time: \(String(format3: totalSeconds))s (\(path))"]
        for phase in phases {
            lines.append("  \(phase.phase.padding(12)) \(String(format3: phase.seconds))s")
        }
        return lines
    }
}

extension String {
    /// `0.842` (three decimals, no Foundation formatting).
    init(format3 value: Double) {
        let milliseconds = Int((value * 1000).rounded())
        let fraction = String(milliseconds % 1000)
        self = "\(milliseconds / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
    }

    func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
