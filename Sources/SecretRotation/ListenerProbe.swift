import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Tells a listening TCP socket of the new generation from one of the old, without
/// talking to it: each socket has an inode number (unique while it exists, allocated
/// from an increasing counter), and `/proc/net/tcp{,6}` lists the inode of every socket
/// in LISTEN state per local port. Inodes seen before the restart belong to the old
/// generation; a LISTEN socket with any other inode on the port was opened after it.
///
/// Why not connect(): right after supervisord reports RUNNING the old server may still
/// hold the port (§5.4 #4), so an answer proves nothing about the new keys.
struct ListenerProbe: Sendable {
    var tables = ["/proc/net/tcp", "/proc/net/tcp6"]

    /// Inodes of LISTEN sockets per local port (only the ports asked for).
    func listeners(ports: Set<Int>) throws -> [Int: Set<UInt64>] {
        var result: [Int: Set<UInt64>] = [:]
        var readAny = false
        for table in tables {
            guard let bytes = try? POSIX.readFile(table, limit: 64 * 1024 * 1024) else { continue }
            readAny = true
            for (port, inode) in Self.parse(bytes) where ports.contains(port) {
                result[port, default: []].insert(inode)
            }
        }
        guard readAny else {
            throw RotationError(.listen, "cannot read \(tables.joined(separator: " or ")) to see which sockets listen; disable the listen wait (--no-wait-listen) on systems without procfs")
        }
        return result
    }

    /// `(port, inode)` of each LISTEN (`0A`) line of a `/proc/net/tcp` table.
    static func parse(_ bytes: [UInt8]) -> [(Int, UInt64)] {
        var result: [(Int, UInt64)] = []
        for line in bytes.split(separator: UInt8(ascii: "\n")).dropFirst() {
            let fields = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode …
            guard fields.count >= 10, fields[3].elementsEqual("0A".utf8) else { continue }
            let local = fields[1]
            guard let colon = local.lastIndex(of: UInt8(ascii: ":")),
                  let port = Int(String(decoding: local[local.index(after: colon)...], as: UTF8.self), radix: 16),
                  let inode = UInt64(String(decoding: fields[9], as: UTF8.self)), inode != 0 else { continue }
            result.append((port, inode))
        }
        return result
    }

    /// Waits until every port has a LISTEN socket whose inode is not in `old[port]`.
    /// Polls from 10 ms with backoff (procfs offers no event for a new listener);
    /// `checkAlive` runs on every poll and throws to end the wait early (the program
    /// that should listen died).
    func waitForNewListeners(ports: [Int], old: [Int: Set<UInt64>], deadline: ContinuousClock.Instant,
                             checkAlive: () async throws -> Void = {}) async throws {
        var delay = Duration.milliseconds(10)
        let wanted = Set(ports)
        while true {
            try await checkAlive()
            let now = try listeners(ports: wanted)
            let missing = ports.filter { port in
                !(now[port] ?? []).contains(where: { !(old[port] ?? []).contains($0) })
            }
            if missing.isEmpty { return }
            guard ContinuousClock.now + delay < deadline else {
                let detail = missing.map { port in
                    (now[port] ?? []).isEmpty ? "\(port): nothing listens" : "\(port): only the previous generation listens"
                }.joined(separator: ", ")
                throw RotationError(.listen, "the restarted servers did not listen in time (\(detail)); see the stack-app log, or raise --listen-timeout")
            }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .milliseconds(250))
        }
    }
}
