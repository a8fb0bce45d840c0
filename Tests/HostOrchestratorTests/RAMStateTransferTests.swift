import QEMUControl
import StackCore
import StackProcess
import TestSupport
import Testing
import Zstd
@testable import HostOrchestrator
#if canImport(Glibc)
import Glibc
#endif

/// The snapshot data path with real QEMUs that need no guest (`-machine none`, a
/// memory backend so there is RAM to move): `migrate fd:` through a pipe into the
/// in-process zstd compressor, then `migrate-incoming fd:` fed by the decompressor,
/// completion taken from MIGRATION events.
@Suite struct RAMStateTransferTests {
    static let memory = ["-object", "memory-backend-ram,id=ram0,size=32M", "-machine", "none,memory-backend=ram0"]
    /// Deadlines of connects and transfers: they prove "not forever" and must absorb a
    /// machine that stalls for half a minute under parallel load (seen in full runs).
    static let bound: Duration = .seconds(90)

    func negotiatedEvents(_ qmp: QMPClient) async throws {
        try await qmp.migrateSetCapabilities([MigrationCapabilityState(.events, true)])
        try await qmp.migrateSetParameters(MigrationParameters(maxBandwidth: ResumeFlow.unlimitedBandwidth))
    }

    /// Captures a stopped `-machine none` QEMU into `path`; returns the outcome.
    func capture(to path: String) async throws -> RAMStateTransfer.Outcome {
        try await QEMUProcess.with(RAMStateTransferTests.memory) { source in
            let qmp = try await QMPClient.connect(path: source.monitorPath, deadline: .now + RAMStateTransferTests.bound)
            defer { qmp.close() }
            try await negotiatedEvents(qmp)
            try await qmp.stop()
            let outcome = try await RAMStateTransfer().capture(qmp: qmp, to: path, deadline: .now + RAMStateTransferTests.bound)
            #expect(try await qmp.queryMigrate().status == .completed)
            return outcome
        }
    }

    @Test func captureAndLoadRoundTripThroughPipesAndZstd() async throws {
        let temp = try TestDirectory(prefix: "hp-ram")
        defer { temp.remove() }
        let path = temp.file("ram.zst")
        let captured = try await capture(to: path)
        // The stream holds the 32 MiB of RAM (zero pages are sent compactly, so more
        // than the header but far less than 32 MiB), compressed well.
        #expect(captured.streamBytes > 4096)
        #expect(captured.compressedBytes == (try FileSystem.status(path)?.size))
        #expect(captured.compressedBytes < captured.streamBytes)

        // What the file holds is a QEMU migration stream: magic "QEVM", version 3.
        let stream = try ZstdDecompressor().decompress(try POSIX.readFile(path, limit: 64 << 20))
        #expect(Int64(stream.count) == captured.streamBytes)
        #expect(Array(stream.prefix(8)) == [0x51, 0x45, 0x56, 0x4D, 0, 0, 0, 3])

        try await QEMUProcess.with(RAMStateTransferTests.memory + ["-incoming", "defer"]) { destination in
            let qmp = try await QMPClient.connect(path: destination.monitorPath, deadline: .now + RAMStateTransferTests.bound)
            defer { qmp.close() }
            try await negotiatedEvents(qmp)
            #expect(try await qmp.queryStatus().status == .inmigrate)
            let loaded = try await RAMStateTransfer().load(qmp: qmp, from: path, deadline: .now + RAMStateTransferTests.bound)
            #expect(loaded.streamBytes == captured.streamBytes)
            #expect(loaded.compressedBytes == captured.compressedBytes)
            #expect(try await qmp.queryMigrate().status == .completed)
            #expect(try await qmp.queryStatus().status != .inmigrate)
        }
    }

    /// A truncated RAM state is reported as the snapshot's fault (the resume then
    /// quarantines it) and the destination QEMU does not end up with a loaded guest.
    @Test func truncatedStateIsReportedAsDamaged() async throws {
        let temp = try TestDirectory(prefix: "hp-ram")
        defer { temp.remove() }
        let path = temp.file("ram.zst")
        let captured = try await capture(to: path)
        #expect(truncate(path, off_t(captured.compressedBytes / 2)) == 0)

        try await QEMUProcess.with(RAMStateTransferTests.memory + ["-incoming", "defer"]) { destination in
            let qmp = try await QMPClient.connect(path: destination.monitorPath, deadline: .now + RAMStateTransferTests.bound)
            defer { qmp.close() }
            try await negotiatedEvents(qmp)
            do {
                _ = try await RAMStateTransfer().load(qmp: qmp, from: path, deadline: .now + RAMStateTransferTests.bound)
                Issue.record("a truncated state loaded")
            } catch let failure as RAMStateTransfer.Failure {
                guard case .damagedState(let why) = failure else {
                    Issue.record("expected damagedState, got \(failure)")
                    return
                }
                #expect(why.contains("truncated"), "\(why)")
            }
        }
    }

    /// A migration QEMU rejects (no `-incoming defer`) fails cleanly: no hang, no leak.
    @Test func loadIntoAQEMUNotWaitingForIncomingFails() async throws {
        let temp = try TestDirectory(prefix: "hp-ram")
        defer { temp.remove() }
        let path = temp.file("ram.zst")
        _ = try await capture(to: path)
        try await QEMUProcess.with(RAMStateTransferTests.memory) { running in
            let qmp = try await QMPClient.connect(path: running.monitorPath, deadline: .now + RAMStateTransferTests.bound)
            defer { qmp.close() }
            await #expect(throws: RAMStateTransfer.Failure.self) {
                _ = try await RAMStateTransfer().load(qmp: qmp, from: path, deadline: .now + .seconds(10))
            }
        }
    }

    /// Issue 12: when the RAM state file cannot be written (ENOSPC: /dev/full) the
    /// compressor's error is the one reported, whatever QEMU says after it.
    @Test func unwritableStateFileIsReportedAsTheCause() async throws {
        try await QEMUProcess.with(RAMStateTransferTests.memory) { source in
            let qmp = try await QMPClient.connect(path: source.monitorPath, deadline: .now + RAMStateTransferTests.bound)
            defer { qmp.close() }
            try await negotiatedEvents(qmp)
            try await qmp.stop()
            do {
                _ = try await RAMStateTransfer().capture(qmp: qmp, to: "/dev/full", deadline: .now + RAMStateTransferTests.bound)
                Issue.record("a capture into /dev/full succeeded")
            } catch let failure as RAMStateTransfer.Failure {
                guard case .local(let why) = failure else {
                    Issue.record("expected a local failure, got \(failure)")
                    return
                }
                #expect(why.hasPrefix("compressing the RAM state into /dev/full failed:"), "\(why)")
                #expect(why.contains("No space left on device"), "\(why)")
            }
        }
    }
}
