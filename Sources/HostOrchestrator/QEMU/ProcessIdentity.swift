import StackCore
import StackProcess
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One process, not just a pid: the pid, when it started (clock ticks after boot, from
/// `/proc/<pid>/stat`) and the boot it started in. A later process that gets the same
/// pid — after the first exited, or after a reboot — has another identity, so a record
/// written about one QEMU can never vouch for another (`SessionRecord`).
public struct ProcessIdentity: Sendable, Equatable, Codable, CustomStringConvertible {
    public var pid: pid_t
    public var startTime: UInt64
    public var bootID: String

    public init(pid: pid_t, startTime: UInt64, bootID: String) {
        self.pid = pid
        self.startTime = startTime
        self.bootID = bootID
    }

    /// The identity of the live process `pid`, nil where `/proc` cannot say (no
    /// procfs, the process is gone). Callers that hold a pidfd read it before checking
    /// the pidfd is still live, so the identity is the pidfd's process.
    static func of(pid: pid_t) -> ProcessIdentity? {
        guard let startTime = ProcessTable.entry(pid: pid)?.startTime, let bootID = currentBootID else { return nil }
        return ProcessIdentity(pid: pid, startTime: startTime, bootID: bootID)
    }

    /// The kernel's random id of this boot (a UUID).
    static var currentBootID: String? {
        (try? FileSystem.readText("/proc/sys/kernel/random/boot_id", limit: 64)).map(\.trimmingWhitespace).flatMap { $0.isEmpty ? nil : $0 }
    }

    public var description: String { "pid \(pid) started at tick \(startTime)" }
}
