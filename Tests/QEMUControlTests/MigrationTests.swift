import CSystem
import QEMUControl
import StackCore
import StackProcess
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Descriptor passing and migration through `fd:` URIs against real QEMU 7.2 (which
/// has no `file:` URIs): the path the orchestrator's capture and resume take.
@Suite struct MigrationTests {
    /// QEMU's migration stream magic, "QEVM".
    static let streamMagic: [UInt8] = [0x51, 0x45, 0x56, 0x4D]

    /// `getfd` carries a pipe's write end over SCM_RIGHTS; `migrate fd:` then writes the
    /// stream into it, which we drain from the read end until QEMU closes its copy.
    @Test func getfdPassesAPipeThatReceivesTheMigrationStream() async throws {
        try await QEMUProcess.with { qemu in
            let qmp = try await QMPClient.connect(path: qemu.monitorPath)
            defer { qmp.close() }
            try await qmp.migrateSetCapabilities([MigrationCapabilityState(.events, true)])
            var ends: [Int32] = [-1, -1]
            try #require(ends.withUnsafeMutableBufferPointer { cs_pipe($0.baseAddress!) } == 0)
            let readEnd = ends[0]
            defer { POSIX.close(readEnd) }
            try await qmp.getfd(name: "stream", descriptor: ends[1])
            POSIX.close(ends[1])
            async let drained = BlockingCall.run { try POSIX.readAll(readEnd, limit: 16 << 20, context: "migration pipe") }

            let cursor = qmp.eventCursor
            try await qmp.migrate(uri: "fd:stream")
            #expect(try await qmp.waitForMigrationEnd(after: cursor, deadline: .now + .seconds(20)) == .completed)
            let bytes = try await drained
            #expect(bytes.count > 100)
            #expect(Array(bytes.prefix(4)) == MigrationTests.streamMagic)
            #expect(try await qmp.queryStatus().status == .postmigrate)
            let info = try await qmp.queryMigrate()
            #expect(info.status == .completed)
            #expect(info.ram != nil)
        }
    }

    /// `add-fd` puts a descriptor into a set QEMU can open as /dev/fdset/N.
    @Test func addFDCreatesADescriptorSet() async throws {
        try await QEMUProcess.with { qemu in
            let qmp = try await QMPClient.connect(path: qemu.monitorPath)
            defer { qmp.close() }
            let null = try POSIX.open("/dev/null", O_RDWR)
            defer { POSIX.close(null) }
            let added = try await qmp.addFD(descriptor: null, opaque: "null device")
            let sets = try await qmp.execute("query-fdsets")
            let set = try #require(sets.arrayValue?.first { $0["fdset-id"]?.intValue == added.fdsetID })
            #expect(set["fds"]?[0]?["fd"]?.intValue == added.fd)
            #expect(set["fds"]?[0]?["opaque"] == "null device")
        }
    }

    /// §4.10-6, §4.16-8: capture a `-machine none` QEMU to a file through `getfd` +
    /// `migrate fd:`, resume it in a second QEMU (`-incoming defer`) through `getfd` +
    /// `migrate-incoming fd:`, completion awaited from MIGRATION events (QMP is silent
    /// while an fd: stream loads).
    @Test func captureAndResumeRoundTripThroughFileDescriptors() async throws {
        let directory = try TemporaryDirectory(prefix: "qc")
        defer { directory.remove() }
        let snapshot = directory.file("snapshot.mig")
        let started = ContinuousClock.now

        try await QEMUProcess.with { source in
            let qmp = try await QMPClient.connect(path: source.monitorPath)
            defer { qmp.close() }
            let capabilities = try await qmp.queryMigrateCapabilities()
            #expect(capabilities.contains { $0.capability == .multifd })
            try await qmp.migrateSetCapabilities([MigrationCapabilityState(.events, true)])
            try await qmp.migrateSetParameters(MigrationParameters(maxBandwidth: 16 << 30))
            #expect(try await qmp.queryMigrateParameters().maxBandwidth == 16 << 30)
            try await qmp.stop()
            let file = try POSIX.open(snapshot, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
            try await qmp.getfd(name: "snapshot", descriptor: file)
            POSIX.close(file)
            let cursor = qmp.eventCursor
            try await qmp.migrate(uri: "fd:snapshot")
            #expect(try await qmp.waitForMigrationEnd(after: cursor, deadline: .now + .seconds(20)) == .completed)
            #expect(try await qmp.queryStatus().status == .postmigrate)
            try await qmp.quit()
            #expect(try await source.waitForExit() == .exited(0))
        }
        let captured = started.duration(to: .now)
        let bytes = try POSIX.readFile(snapshot)
        #expect(Array(bytes.prefix(4)) == MigrationTests.streamMagic)

        let resumeStarted = ContinuousClock.now
        try await QEMUProcess.with(["-S", "-incoming", "defer"]) { target in
            let qmp = try await QMPClient.connect(path: target.monitorPath)
            defer { qmp.close() }
            #expect(try await qmp.queryStatus().status == .inmigrate)
            try await qmp.migrateSetCapabilities([MigrationCapabilityState(.events, true)])
            let file = try POSIX.open(snapshot, O_RDONLY)
            try await qmp.getfd(name: "snapshot", descriptor: file)
            POSIX.close(file)
            let cursor = qmp.eventCursor
            try await qmp.migrateIncoming(uri: "fd:snapshot")
            #expect(try await qmp.waitForMigrationEnd(after: cursor, deadline: .now + .seconds(20)) == .completed)
            let status = try await qmp.queryStatus().status
            #expect(status == .paused)
            try await qmp.cont()
            #expect(try await qmp.queryStatus().status == .running)
        }
        let resumed = resumeStarted.duration(to: .now)
        print("migration round trip (-machine none, \(bytes.count) bytes): capture \(captured), resume \(resumed), total \(started.duration(to: .now)) (includes launching both QEMUs)")
    }
}
