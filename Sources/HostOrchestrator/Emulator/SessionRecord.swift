#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import StackCore

/// VM_DIR/session.json: what a `start` that completed vouches for — which QEMU process
/// it left running and whether that VM's secrets were rotated. Written atomically (0600)
/// as the very last step of a successful start, after the services answered with the
/// new keys; removed before every launch and whenever the VM is stopped.
///
/// A later `start` reuses a running VM only when this record names that very QEMU
/// process (pid, start time and boot: `ProcessIdentity`) and says the secrets were
/// rotated — or says rotation was skipped by request and the new start asks for the
/// same (`EMULATOR_NO_ROTATION=1`) — and internal-pck still holds the key that start
/// wrote; `status` exits 0 only then. Any other running VM (left by a start or capture
/// that was interrupted, killed or gave up, paused mid-resume, or started with
/// placeholders) is stopped and a fresh one started, with a message. Redoing just the
/// rotation on such a VM was rejected: it would first have to find out where that VM
/// stopped (paused, still loading, share half plugged, a trigger still running), while
/// a fresh resume costs about as much as one rotation plus its restart and is the path
/// every test exercises.
struct SessionRecord: Sendable, Equatable, Codable {
    enum Secrets: String, Sendable, Codable {
        /// Fresh secrets were rotated into the guest and its services answered afterwards.
        case rotated
        /// `EMULATOR_NO_ROTATION=1`: the image's own keys (the public placeholders in a
        /// snapshot-built image) are live.
        case notRotatedByRequest = "not-rotated-by-request"
    }

    static let currentFormatVersion = 1
    /// The file is tiny; anything larger is not ours.
    static let sizeLimit = 64 * 1024

    var formatVersion: Int
    var qemu: ProcessIdentity
    var secrets: Secrets
    /// SHA-256 (hex) of internal-pck as the start left it (the publishable key, which
    /// the dashboard serves to any browser; its digest reveals nothing more). nil when
    /// the start wrote none (a cold boot without rotation).
    var internalPCKDigest: String?
    var started: Date

    init(qemu: ProcessIdentity, secrets: Secrets, internalPCKDigest: String?, started: Date = Date()) {
        self.formatVersion = SessionRecord.currentFormatVersion
        self.qemu = qemu
        self.secrets = secrets
        self.internalPCKDigest = internalPCKDigest
        self.started = started
    }

    /// Records `process` as the VM this start completed, with `rotated` saying whether
    /// fresh secrets are live. Throws when the process's identity cannot be read: an
    /// unprovable VM must not be called green.
    static func write(for process: QEMUProcess, rotated: Bool, paths: EmulatorPaths) throws {
        guard let identity = process.identity else {
            throw HostError(.malformedFile, "cannot record the session: the identity of QEMU pid \(process.pid) cannot be read from /proc")
        }
        let digest = (try? FileSystem.readRegularFile(paths.internalPCK, limit: sizeLimit, followLinks: false)).map(SHA256.hex)
        let record = SessionRecord(qemu: identity, secrets: rotated ? .rotated : .notRotatedByRequest, internalPCKDigest: digest)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let bytes = try HostError.translating { Array(try encoder.encode(record)) }
        try HostError.translating { try AtomicFile(path: paths.sessionRecord, mode: 0o600).write(bytes) }
    }

    /// The record, nil when there is none; throws when it is unreadable or not ours.
    static func read(_ paths: EmulatorPaths) throws -> SessionRecord? {
        guard POSIX.exists(paths.sessionRecord) else { return nil }
        let bytes = try FileSystem.readRegularFile(paths.sessionRecord, limit: sizeLimit, followLinks: false)
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try HostError.translating { try decoder.decode(SessionRecord.self, from: Data(bytes)) }
    }

    /// Whether a running VM may be reused as it is.
    enum Verdict: Sendable, Equatable {
        case proven
        /// Why not, completing "The emulator VM (pid N) …".
        case unproven(String)
    }

    /// Judges the running `process` by the record (see the type's comment).
    /// `acceptingUnrotated`: the caller itself runs without rotation.
    static func verdict(for process: QEMUProcess, paths: EmulatorPaths, acceptingUnrotated: Bool) -> Verdict {
        let record: SessionRecord
        do {
            guard let found = try read(paths) else {
                return .unproven("was not left by a start that completed (no \(paths.sessionRecord)), so its secrets may be the public placeholders")
            }
            record = found
        } catch {
            return .unproven("has an unreadable session record (\(error))")
        }
        guard record.formatVersion == SessionRecord.currentFormatVersion else {
            return .unproven("has a session record of format \(record.formatVersion), which this stack-emulator does not read")
        }
        guard let identity = process.identity, identity == record.qemu else {
            return .unproven("is not the QEMU process its session record names (\(record.qemu))")
        }
        switch record.secrets {
        case .notRotatedByRequest where !acceptingUnrotated:
            return .unproven("runs without rotated secrets (it was started with EMULATOR_NO_ROTATION=1)")
        case .notRotatedByRequest:
            return .proven
        case .rotated:
            let digest = (try? FileSystem.readRegularFile(paths.internalPCK, limit: sizeLimit, followLinks: false)).map(SHA256.hex)
            guard let digest, digest == record.internalPCKDigest else {
                return .unproven("no longer matches \(paths.internalPCK) (missing or changed since its start)")
            }
            return .proven
        }
    }
}
