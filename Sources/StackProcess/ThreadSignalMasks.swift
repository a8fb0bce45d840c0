import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads every thread's blocked-signal mask from `/proc/self/task/*/status`, to prove
/// that a signal blocked for a signalfd is blocked in *all* threads. A thread started
/// before the mask was set would take the signal itself (running the no-op handler),
/// and the signalfd would never see it.
enum ThreadSignalMasks {
    /// Thread ids that do not block every signal in `signals`. Empty when the process
    /// has no `/proc` (nothing can be checked then).
    static func threadsNotBlocking(_ signals: Set<Signal>) -> [pid_t] {
        var wanted: UInt64 = 0
        for signal in signals { wanted |= 1 << UInt64(signal.rawValue - 1) }
        return ProcessTable.numericNames(in: "/proc/self/task").filter { tid in
            guard let mask = blockedMask(thread: tid) else { return false }
            return mask & wanted != wanted
        }
    }

    static func blockedMask(thread tid: pid_t) -> UInt64? {
        guard let bytes = try? POSIX.readFile("/proc/self/task/\(tid)/status", limit: 64 * 1024) else { return nil }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix("SigBlk:") {
            let hex = line.dropFirst("SigBlk:".count).drop(while: { $0 == " " || $0 == "\t" })
            return UInt64(hex, radix: 16)
        }
        return nil
    }
}
