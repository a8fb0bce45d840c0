#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import QEMUControl
import StackCore

/// Captures a snapshot (§4.16): a cold boot in the snapshot layout (no `-incoming`) on a
/// fresh disk layer inside the new snapshot's staging directory, services healthy, the
/// guest agent answering (§5.4 #22: a snapshot whose agent port is closed can never be
/// resumed), then `stop` and the RAM state migrated straight into zstd (QEMU 7.2:
/// `migrate fd:` through a pipe; with `mapped-ram` + `multifd`: `file:`), `quit`, and
/// the commit: RAM state, the capture-time disk as the immutable layer (§5.4 #19) and
/// the facts it depends on, published atomically. A failed capture publishes nothing
/// and leaves the previous snapshot in place (the shell deleted it first). From
/// `beginCapture` to the commit the capture holds the snapshot store's lock, so a
/// capture from another run directory on the same IMAGE_DIR fails at once instead of
/// sweeping this one's staging directory.
struct CaptureFlow: Sendable {
    let context: EmulatorContext
    let timings: PhaseTimings

    /// The uncompressed `mapped-ram` file kept in the snapshot as the resume cache.
    static let mappedRAMCache = "ram.raw"

    enum Outcome: Sendable, Equatable {
        case captured(Snapshot)
        /// A usable snapshot exists and `EMULATOR_FORCE_CAPTURE` is not set (§4.19-35).
        case alreadyCaptured(Snapshot)
    }

    func run() async throws -> Outcome {
        let configuration = context.configuration
        let paths = context.paths
        let console = context.console
        let store = context.store

        // (`Emulator.capture` has checked that no VM runs.)
        let setup = try await timings.measure(.preflight) { try await MachineSetup.gather(context) }
        var spec = setup.spec(.snapshot(incoming: false), configuration: configuration, host: context.host)
        let facts = setup.facts(for: spec)
        switch store.currentSnapshot(matching: facts) {
        case .usable(let snapshot) where !configuration.forceCapture:
            console.log("A snapshot for this configuration already exists (\(snapshot.directory)); set EMULATOR_FORCE_CAPTURE=1 to capture a new one.")
            return .alreadyCaptured(snapshot)
        case .mismatched(_, let differences):
            console.info("The existing snapshot does not match (\(differences.joined(separator: "; "))); capturing a new one.")
        case .damaged(let id, let reason):
            console.warn("The existing snapshot is damaged (\(reason)); \(EmulatorWarnings.quarantined(store, id: id, reason: reason)).")
        default:
            break
        }
        try PortAvailability.ensureFree(configuration.ports)
        console.info("Arch: \(configuration.architecture.rawValue) | Accel: \(setup.accelerator.accelerator.rawValue) (\(setup.accelerator.reason))")

        try paths.prepareVMDirectory()
        // A capture's VM never serves as a started one: no record may name it.
        try FileSystem.removeFile(paths.sessionRecord)
        let capture = try store.beginCapture()
        do {
            try await timings.measure(.prepare) {
                try PhantomDisk.ensure(at: paths.seedPhantom)
                try PhantomDisk.ensure(at: paths.bundlePhantom)
                try RuntimeDisk(configuration: configuration).ensure(for: .capture)
                try await capture.createDiskLayer(over: paths.baseImage, using: context.image)
            }
            spec.files.disk = capture.diskLayerPath
            return .captured(try await bootAndCapture(spec: spec, setup: setup, facts: facts, capture: capture))
        } catch {
            store.abandon(capture)
            throw error
        }
    }

    private func bootAndCapture(spec: MachineSpec, setup: MachineSetup, facts: HostFacts, capture: SnapshotCapture) async throws -> Snapshot {
        let configuration = context.configuration
        let console = context.console
        let store = context.store
        console.info("Cold-booting VM to capture a local snapshot (snapshot-compatible layout, no -incoming)...")
        let process = try await timings.measure(.launch) { try await context.launcher.launch(spec) }
        console.info("VM: \(spec.resources.memoryMiB)MB / \(spec.resources.cpus) CPUs (pinned for snapshot compatibility)")
        do {
            do {
                _ = try await timings.measure(.boot) {
                    try await context.health.waitUntilHealthy(ServiceEndpoint.all, deadline: .now + configuration.readyTimeout) { _, elapsed in
                        console.waiting("Waiting for services", elapsed: elapsed)
                    }
                }
                console.finishProgress()
            } catch {
                console.finishProgress()
                try Task.checkCancellation()
                context.printSerialTail("Services did not come up within \(Seconds.format(configuration.readyTimeout)); last serial console lines:")
                throw HostError(.captureFailed, "Services did not come up; capture aborted. (\(error))")
            }
            do {
                let agent = try await context.connectAgent()
                defer { agent.close() }
                try await timings.measure(.agentSync) { try await agent.sync(deadline: .now + context.deadlines.agent) }
            } catch {
                throw HostError(.captureFailed, "The guest agent did not answer; a snapshot without it could never be resumed, so capture aborted. (\(error))")
            }
            let (stateFormat, transfer, capabilities) = try await migrate(capture: capture)
            console.log("Migration complete: \(ByteCount.format(transfer.streamBytes)) of state, \(ByteCount.format(transfer.compressedBytes)) compressed, in \(Seconds.format(transfer.duration)).")

            let snapshot = try await timings.measure(.commit) { () async throws -> Snapshot in
                if !(await process.waitForExit(timeout: .seconds(30))) {
                    console.warn("QEMU did not exit after quit; stopping it.")
                    try await process.terminate()
                }
                try context.paths.removeRuntimeFiles()
                // Interrupted before the commit: nothing is published.
                try Task.checkCancellation()
                let metadata = SnapshotMetadata(
                    created: Date(), facts: facts,
                    ramStateFile: SnapshotStore.defaultRAMStateFile, diskLayerFile: SnapshotStore.diskLayerFile,
                    ramStateFormat: stateFormat, ramStateBytes: transfer.streamBytes,
                    migrationCapabilities: capabilities.map(\.rawValue),
                    captureSeconds: Double(timings.elapsed.components.seconds) + Double(timings.elapsed.components.attoseconds) / 1e18)
                return try store.commit(capture, metadata: metadata)
            }
            console.log("Snapshot captured: \(snapshot.directory) (\(ByteCount.format(transfer.compressedBytes)) RAM state) in \(Seconds.format(timings.elapsed)).")
            return snapshot
        } catch {
            await context.discard(process)
            throw error
        }
    }

    /// stop → migrate → quit. Returns the format, the transfer and the capabilities set.
    private func migrate(capture: SnapshotCapture) async throws -> (RAMStateFormat, RAMStateTransfer.Outcome, [MigrationCapability]) {
        let console = context.console
        let qmp = try await context.connectQMP()
        defer { qmp.close() }
        let offered = Set(try await qmp.queryMigrateCapabilities().map(\.capability))
        let mappedRAM = offered.contains(.mappedRAM) && offered.contains(.multifd)
        var capabilities: [MigrationCapability] = [.events]
        var parameters = MigrationParameters(maxBandwidth: ResumeFlow.unlimitedBandwidth)
        if mappedRAM {
            capabilities += [.mappedRAM, .multifd]
            parameters.multifdChannels = Int64(max(1, min(context.configuration.snapshot.cpus, 8)))
        }
        try await qmp.migrateSetCapabilities(capabilities.map { MigrationCapabilityState($0, true) })
        try await qmp.migrateSetParameters(parameters)
        console.log("Capturing VM state via QMP (\(mappedRAM ? "mapped-ram + multifd, file:" : "stream into zstd, fd:"))...")

        let transfer = RAMStateTransfer()
        let deadline = ContinuousClock.now + context.configuration.readyTimeout
        let progress: @Sendable (Int64, Int64?) -> Void = { console.progress("Capturing RAM", done: $0, total: $1) }
        let outcome: RAMStateTransfer.Outcome
        do {
            outcome = try await timings.measure(.migrate) {
                try await qmp.stop(deadline: .now + .seconds(10))
                if mappedRAM {
                    return try await transfer.captureMappedRAM(qmp: qmp, raw: capture.path(for: CaptureFlow.mappedRAMCache),
                                                               to: capture.ramStatePath, deadline: deadline, progress: progress)
                }
                return try await transfer.capture(qmp: qmp, to: capture.ramStatePath, deadline: deadline, progress: progress)
            }
            console.finishProgress()
        } catch {
            console.finishProgress()
            throw HostError(.captureFailed, "Capturing the RAM state failed: \(error)")
        }
        try await qmp.quit(deadline: .now + .seconds(10))
        return (mappedRAM ? .zstdMappedRAM : .zstdStream, outcome, capabilities)
    }
}
