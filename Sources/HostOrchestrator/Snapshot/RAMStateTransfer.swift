import CSystem
import QEMUControl
import StackCore
import StackProcess
import Zstd
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Moves a guest's RAM state between QEMU and a zstd file without an uncompressed copy
/// on disk.
///
/// QEMU 7.2 has no `file:` migration (docs/platform-facts.md), so the stream goes through a pipe:
/// at capture QEMU writes into it (`getfd` + `migrate fd:`) and an in-process zstd
/// compressor on its own thread reads it; at resume a decompressor thread writes into
/// it and QEMU reads (`migrate-incoming fd:`). Completion is taken from QMP's
/// `MIGRATION` events (capability `events`, set by the caller on both sides): while an
/// `fd:` load runs, QEMU does not answer QMP at all.
///
/// With `mapped-ram` (QEMU ≥ 9.0) the stream is a file with fixed offsets instead,
/// written and read through `file:` URIs (`captureMappedRAM`, `loadMappedRAM`).
public struct RAMStateTransfer: Sendable {
    /// The name the descriptor gets inside QEMU (`getfd`).
    public var descriptorName: String
    /// A (de)compressor whose pipe peer stays silent this long gives up: QEMU died or
    /// hung. QEMU reads and writes continuously during a migration.
    public var idleTimeout: Duration

    public init(descriptorName: String = "stack-ram", idleTimeout: Duration = .seconds(15)) {
        self.descriptorName = descriptorName
        self.idleTimeout = idleTimeout
    }

    public struct Outcome: Sendable, Equatable {
        /// Uncompressed bytes of the migration stream.
        public var streamBytes: Int64
        /// Bytes of the zstd file.
        public var compressedBytes: Int64
        public var duration: Duration
    }

    /// Why a transfer failed, for the caller's decision (quarantine or not).
    public enum Failure: Error, Sendable, CustomStringConvertible {
        /// The zstd file is damaged or truncated: the snapshot is at fault.
        case damagedState(String)
        /// QEMU reported the migration failed (or exited); `detail` is its reason if known.
        case migrationFailed(String)
        /// The migration did not finish before the deadline.
        case timedOut(String)
        /// A local problem (file, pipe, thread): not the snapshot's fault.
        case local(String)

        public var description: String {
            switch self {
            case .damagedState(let why), .migrationFailed(let why), .timedOut(let why), .local(let why): why
            }
        }
    }

    // MARK: capture (outgoing)

    /// Streams the (paused) guest's state into `path` as one zstd frame. `progress` gets
    /// QEMU's transferred and total RAM bytes every ~200 ms.
    public func capture(qmp: QMPClient, to path: String, deadline: ContinuousClock.Instant,
                        progress: (@Sendable (Int64, Int64?) -> Void)? = nil) async throws -> Outcome {
        let started = ContinuousClock.now
        let output: Int32
        do {
            output = try POSIX.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
        } catch {
            throw Failure.local("cannot create \(path): \(error)")
        }
        defer { POSIX.close(output) }
        let (readEnd, writeEnd) = try RAMStateTransfer.pipe()
        let compressor = ZstdCompressor(level: 1, workers: .allCores, idleTimeout: idleTimeout)
        async let compressed: Result<ZstdTransfer, any Error> = BlockingCall.run {
            defer { close(readEnd) }
            return Result { try compressor.compress(from: readEnd, to: output) }
        }
        let name = descriptorName
        var failure: Failure?
        do {
            try await qmp.getfd(name: name, descriptor: writeEnd, deadline: deadline)
        } catch {
            failure = .local("cannot hand the migration pipe to QEMU: \(error)")
        }
        // QEMU has its own copy now; ours must go, or the compressor never sees EOF.
        close(writeEnd)
        if failure == nil {
            do {
                let cursor = qmp.eventCursor
                try await qmp.migrate(uri: "fd:\(name)", deadline: deadline)
                let status = try await RAMStateTransfer.waitForFinalStatus(qmp, after: cursor, deadline: deadline, progress: progress)
                if status != .completed {
                    let info = try? await qmp.queryMigrate(deadline: .now + .seconds(2))
                    failure = .migrationFailed("migration ended \(status)\(info?.errorDescription.map { ": \($0)" } ?? "")")
                }
            } catch let error as QEMUControlError where error.code == .timedOut {
                failure = .timedOut("the migration did not finish in time: \(error.message)")
                try? await qmp.migrateCancel(deadline: .now + .seconds(2))
            } catch {
                failure = .migrationFailed("\(error)")
            }
            if failure != nil {
                // The descriptor may still be QEMU's; closing it ends the compressor's input.
                try? await qmp.closefd(name: name, deadline: .now + .seconds(2))
            }
        }
        let result = await compressed
        // The root cause first: a compressor that could not write (ENOSPC on the
        // snapshot file) stops reading, and QEMU then fails on a broken pipe. Only a
        // compressor that timed out waiting for its input is the consequence of QEMU's
        // failure rather than its cause.
        if case .failure(let error) = result, (error as? ZstdError)?.code != .timedOut {
            throw Failure.local("compressing the RAM state into \(path) failed: \(error)\(failure.map { " (then QEMU: \($0))" } ?? "")")
        }
        if let failure { throw failure }
        switch result {
        case .success(let transfer):
            do {
                try POSIX.fsync(output, context: path)
            } catch {
                throw Failure.local("\(error)")
            }
            return Outcome(streamBytes: Int64(transfer.bytesIn), compressedBytes: Int64(transfer.bytesOut),
                           duration: ContinuousClock.now - started)
        case .failure(let error):
            throw Failure.local("compressing the RAM state into \(path) failed: \(error)")
        }
    }

    // MARK: resume (incoming)

    /// Feeds the zstd file at `path` to a QEMU started with `-incoming defer`, and
    /// returns once QEMU reports the load `completed`. `progress` gets decompressed bytes.
    public func load(qmp: QMPClient, from path: String, deadline: ContinuousClock.Instant,
                     progress: (@Sendable (Int64) -> Void)? = nil) async throws -> Outcome {
        let started = ContinuousClock.now
        let input: Int32
        do {
            input = try POSIX.open(path, O_RDONLY | O_CLOEXEC)
        } catch {
            throw Failure.damagedState("cannot open the RAM state \(path): \(error)")
        }
        let (readEnd, writeEnd): (Int32, Int32)
        do {
            (readEnd, writeEnd) = try RAMStateTransfer.pipe()
        } catch {
            close(input)
            throw error
        }
        let name = descriptorName
        do {
            try await qmp.getfd(name: name, descriptor: readEnd, deadline: deadline)
        } catch {
            close(readEnd)
            close(writeEnd)
            close(input)
            throw Failure.migrationFailed("cannot hand the migration pipe to QEMU: \(error)")
        }
        close(readEnd)

        let decompressor = ZstdDecompressor(idleTimeout: idleTimeout)
        enum Step: Sendable {
            case migration(Result<MigrationStatus, any Error>)
            case decompression(Result<ZstdTransfer, any Error>)
        }
        let cursor = qmp.eventCursor
        // Both run at once; a damaged file ends the wait for QEMU at once (QEMU may
        // neither exit nor report the failure quickly).
        let (migration, decompression) = await withTaskGroup(of: Step.self) { group in
            group.addTask {
                .decompression(await BlockingCall.run {
                    defer {
                        close(writeEnd)
                        close(input)
                    }
                    return Result {
                        try decompressor.decompress(from: input, to: writeEnd) { step in
                            progress?(Int64(step.bytesOut))
                        }
                    }
                })
            }
            group.addTask {
                do {
                    try await qmp.migrateIncoming(uri: "fd:\(name)", deadline: deadline)
                    return .migration(.success(try await RAMStateTransfer.waitForFinalStatus(qmp, after: cursor, deadline: deadline, progress: nil)))
                } catch {
                    return .migration(.failure(error))
                }
            }
            var migration: Result<MigrationStatus, any Error>?
            var decompression: Result<ZstdTransfer, any Error>?
            for await step in group {
                switch step {
                case .migration(let result):
                    migration = result
                case .decompression(let result):
                    decompression = result
                    if case .failure = result, migration == nil { group.cancelAll() }
                }
            }
            return (migration!, decompression!)
        }

        // A damaged file explains any QEMU failure that followed it.
        if case .failure(let error as ZstdError) = decompression, error.code == .corruptInput || error.code == .truncatedInput {
            try? await qmp.closefd(name: name, deadline: .now + .seconds(1))
            throw Failure.damagedState("the RAM state \(path) is damaged: \(error.message)")
        }
        var failure: Failure?
        switch migration {
        case .success(let status) where status == .completed:
            break
        case .success(let status):
            failure = .migrationFailed("QEMU reported the incoming migration \(status)")
        case .failure(let error as QEMUControlError) where error.code == .timedOut:
            failure = .timedOut("QEMU did not finish loading the snapshot in time (\(error.message))")
        case .failure(let error as QEMUControlError) where error.code == .connectionClosed:
            failure = .migrationFailed("QEMU exited while loading the snapshot")
        case .failure(let error):
            failure = .migrationFailed("\(error)")
        }
        if let failure {
            try? await qmp.closefd(name: name, deadline: .now + .seconds(1))
            throw failure
        }
        switch decompression {
        case .success(let transfer):
            return Outcome(streamBytes: Int64(transfer.bytesOut), compressedBytes: Int64(transfer.bytesIn),
                           duration: ContinuousClock.now - started)
        case .failure(let error):
            throw Failure.local("decompressing \(path) failed: \(error)")
        }
    }

    // MARK: mapped-ram (QEMU ≥ 9.0)

    /// `migrate file:<raw>` with mapped-ram (capabilities set by the caller), then the raw
    /// file compressed into `path`. The raw file is kept: it is the resume cache.
    public func captureMappedRAM(qmp: QMPClient, raw: String, to path: String, deadline: ContinuousClock.Instant,
                                 progress: (@Sendable (Int64, Int64?) -> Void)? = nil) async throws -> Outcome {
        let started = ContinuousClock.now
        do {
            let cursor = qmp.eventCursor
            try await qmp.migrate(uri: "file:\(raw)", deadline: deadline)
            let status = try await RAMStateTransfer.waitForFinalStatus(qmp, after: cursor, deadline: deadline, progress: progress)
            guard status == .completed else {
                let info = try? await qmp.queryMigrate(deadline: .now + .seconds(2))
                throw Failure.migrationFailed("migration ended \(status)\(info?.errorDescription.map { ": \($0)" } ?? "")")
            }
        } catch let error as QEMUControlError where error.code == .timedOut {
            throw Failure.timedOut("the migration did not finish in time: \(error.message)")
        }
        let transfer = try await BlockingCall.run { () throws -> ZstdTransfer in
            let input = try POSIX.open(raw, O_RDONLY | O_CLOEXEC)
            defer { POSIX.close(input) }
            let output = try POSIX.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
            defer { POSIX.close(output) }
            let transfer = try ZstdCompressor(level: 1, workers: .allCores).compress(from: input, to: output)
            try POSIX.fsync(output, context: path)
            return transfer
        }
        return Outcome(streamBytes: Int64(transfer.bytesIn), compressedBytes: Int64(transfer.bytesOut), duration: ContinuousClock.now - started)
    }

    /// Decompresses `path` into the sparse `raw` cache unless it is already there and
    /// newer, then `migrate-incoming file:<raw>`.
    public func loadMappedRAM(qmp: QMPClient, from path: String, raw: String, deadline: ContinuousClock.Instant,
                              progress: (@Sendable (Int64) -> Void)? = nil) async throws -> Outcome {
        let started = ContinuousClock.now
        let source = try FileSystem.status(path, followLinks: true)
        let cache = try FileSystem.status(raw, followLinks: true)
        if cache == nil || cache!.size == 0 || (source.map { cache!.modificationSeconds < $0.modificationSeconds } ?? true) {
            let temporary = raw + ".tmp"
            do {
                try await BlockingCall.run { () throws in
                    let input = try POSIX.open(path, O_RDONLY | O_CLOEXEC)
                    defer { POSIX.close(input) }
                    let output = try POSIX.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
                    defer { POSIX.close(output) }
                    try ZstdDecompressor(sparse: true).decompress(from: input, to: output) { progress?(Int64($0.bytesOut)) }
                }
                try FileSystem.rename(temporary, raw)
            } catch let error as ZstdError where error.code == .corruptInput || error.code == .truncatedInput {
                try? FileSystem.removeFile(temporary)
                throw Failure.damagedState("the RAM state \(path) is damaged: \(error.message)")
            } catch {
                try? FileSystem.removeFile(temporary)
                throw Failure.local("cannot decompress \(path): \(error)")
            }
        }
        do {
            let cursor = qmp.eventCursor
            try await qmp.migrateIncoming(uri: "file:\(raw)", deadline: deadline)
            let status = try await RAMStateTransfer.waitForFinalStatus(qmp, after: cursor, deadline: deadline, progress: nil)
            guard status == .completed else { throw Failure.migrationFailed("QEMU reported the incoming migration \(status)") }
        } catch let error as QEMUControlError where error.code == .timedOut {
            throw Failure.timedOut("QEMU did not finish loading the snapshot in time (\(error.message))")
        } catch let error as QEMUControlError where error.code == .connectionClosed {
            throw Failure.migrationFailed("QEMU exited while loading the snapshot")
        }
        let size = (try? FileSystem.status(raw, followLinks: true))??.size ?? 0
        return Outcome(streamBytes: size, compressedBytes: source?.size ?? 0, duration: ContinuousClock.now - started)
    }

    // MARK: helpers

    /// The final status of the migration started after `cursor`, from `MIGRATION` events
    /// (no polling). With `progress`, `query-migrate` is asked every ~200 ms meanwhile
    /// (outgoing only: QEMU answers QMP during an outgoing migration).
    static func waitForFinalStatus(_ qmp: QMPClient, after cursor: UInt64, deadline: ContinuousClock.Instant,
                                   progress: (@Sendable (Int64, Int64?) -> Void)?) async throws -> MigrationStatus {
        try await withThrowingTaskGroup(of: MigrationStatus?.self) { group in
            group.addTask {
                let event = try await qmp.waitForEvent(after: cursor, deadline: deadline, description: "final MIGRATION event") {
                    $0.migrationStatus?.isFinal == true
                }
                return event.migrationStatus
            }
            if let progress {
                group.addTask {
                    while !Task.isCancelled {
                        if let info = try? await qmp.queryMigrate(deadline: .now + .seconds(2)), let ram = info.ram {
                            progress(ram.transferred, ram.total)
                        }
                        try? await Task.sleep(for: .milliseconds(200))
                    }
                    return nil
                }
            }
            while let result = try await group.next() {
                if let status = result {
                    group.cancelAll()
                    return status
                }
            }
            throw QEMUControlError(.protocolViolation, "no final MIGRATION event")
        }
    }

    /// A close-on-exec pipe with a 1 MiB buffer (fewer wake-ups for a fast stream).
    static func pipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        let rc = fds.withUnsafeMutableBufferPointer { cs_pipe($0.baseAddress!) }
        guard rc == 0 else { throw Failure.local("pipe: \(StackError.describe(errno: -rc))") }
        #if os(Linux)
        // F_SETPIPE_SZ; the default limit for unprivileged users is 1 MiB. Best effort.
        _ = fcntl(fds[1], 1031, Int32(1 << 20))
        #endif
        return (fds[0], fds[1])
    }
}
