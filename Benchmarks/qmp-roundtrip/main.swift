// Benchmark driver for Benchmarks/qmp-roundtrip.sh (the script starts QEMU and the
// Python baseline; this measures the same steps through QEMUControl).
//
//   qmp-roundtrip latency <monitor.sock> <count>
//       prints one line: "<median µs> <p90 µs>" for sequential query-status round trips
//   qmp-roundtrip migrate <source.sock> <target.sock> <snapshot file>
//       prints one line: "<capture ms> <resume ms>" (target started with -S -incoming defer)
import QEMUControl
#if canImport(Glibc)
import Glibc
#endif

func microseconds(_ duration: Duration) -> Double {
    let (seconds, attoseconds) = duration.components
    return Double(seconds) * 1e6 + Double(attoseconds) / 1e12
}

func percentile(_ values: [Double], _ fraction: Double) -> Double {
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]
}

func latency(socket: String, count: Int) async throws {
    let qmp = try await QMPClient.connect(path: socket)
    defer { qmp.close() }
    for _ in 0..<min(100, count) { _ = try await qmp.queryStatus() }
    var samples: [Double] = []
    samples.reserveCapacity(count)
    for _ in 0..<count {
        let started = ContinuousClock.now
        _ = try await qmp.queryStatus()
        samples.append(microseconds(started.duration(to: .now)))
    }
    print("\(percentile(samples, 0.5)) \(percentile(samples, 0.9))")
}

func openFile(_ path: String, _ flags: Int32) throws -> Int32 {
    let fd = open(path, flags | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw QEMUControlError(.invalidArgument, "open \(path): errno \(errno)") }
    return fd
}

func migrate(source: String, target: String, snapshot: String) async throws {
    let started = ContinuousClock.now
    let from = try await QMPClient.connect(path: source)
    try await from.migrateSetCapabilities([MigrationCapabilityState(.events, true)])
    try await from.migrateSetParameters(MigrationParameters(maxBandwidth: 16 << 30))
    try await from.stop()
    let out = try openFile(snapshot, O_WRONLY | O_CREAT | O_TRUNC)
    try await from.getfd(name: "snapshot", descriptor: out)
    close(out)
    var cursor = from.eventCursor
    try await from.migrate(uri: "fd:snapshot")
    guard try await from.waitForMigrationEnd(after: cursor) == .completed else {
        throw QEMUControlError(.commandFailed, "capture did not complete")
    }
    try await from.quit()
    from.close()
    let captured = started.duration(to: .now)

    let resumeStarted = ContinuousClock.now
    let to = try await QMPClient.connect(path: target)
    defer { to.close() }
    try await to.migrateSetCapabilities([MigrationCapabilityState(.events, true)])
    let input = try openFile(snapshot, O_RDONLY)
    try await to.getfd(name: "snapshot", descriptor: input)
    close(input)
    cursor = to.eventCursor
    try await to.migrateIncoming(uri: "fd:snapshot")
    guard try await to.waitForMigrationEnd(after: cursor) == .completed else {
        throw QEMUControlError(.commandFailed, "resume did not complete")
    }
    try await to.cont()
    guard try await to.queryStatus().status == .running else {
        throw QEMUControlError(.commandFailed, "resumed QEMU is not running")
    }
    let resumed = resumeStarted.duration(to: .now)
    print("\(microseconds(captured) / 1000) \(microseconds(resumed) / 1000)")
}

func printError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

let arguments = CommandLine.arguments
do {
    switch (arguments.count, arguments.dropFirst().first) {
    case (4, "latency"):
        try await latency(socket: arguments[2], count: Int(arguments[3]) ?? 1000)
    case (5, "migrate"):
        try await migrate(source: arguments[2], target: arguments[3], snapshot: arguments[4])
    default:
        printError("usage: qmp-roundtrip latency SOCKET COUNT | migrate SOURCE TARGET SNAPSHOT")
        exit(2)
    }
} catch {
    printError("qmp-roundtrip: \(error)")
    exit(1)
}
