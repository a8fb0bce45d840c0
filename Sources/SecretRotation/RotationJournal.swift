import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The record that makes a rotation resumable after a crash (kill -9, power loss).
///
/// It holds publishable keys only — the key that is also in every built bundle, in
/// rotated-secrets.env and in the ApiKeySet row — never SSK, SAK or CRON_SECRET. It is
/// written atomically with mode 0600 next to rotated-secrets.env, in the strict env-file
/// grammar (never evaluated):
///
/// ```
/// ROTATION_PHASE=rewrite
/// ROTATION_NEW_PUBLISHABLE_CLIENT_KEY=<hex64>
/// ROTATION_OLD_PUBLISHABLE_CLIENT_KEY=<hex64>   (zero or more)
/// ```
///
/// Phase `rewrite`: every file under `<WORK_DIR>/apps` holds one of the old keys or the
/// new one; env file and row may hold the old or the new secrets. Rewriting each old key
/// to the new one, then writing env file and row again, finishes the job.
/// Phase `restart`: env file, files and row hold the new keys; the programs that read
/// them at start have not been restarted successfully yet.
public struct RotationJournal: Sendable, Equatable {
    public enum Phase: String, Sendable {
        case rewrite
        case restart
    }

    public var phase: Phase
    /// The publishable key the rotation moves to.
    public var newPublishableKey: Secret
    /// Keys that may still be in some file (empty in phase `restart`).
    public var oldPublishableKeys: [Secret]

    public init(phase: Phase, newPublishableKey: Secret, oldPublishableKeys: [Secret]) {
        self.phase = phase
        self.newPublishableKey = newPublishableKey
        self.oldPublishableKeys = oldPublishableKeys
    }

    static let phaseKey = "ROTATION_PHASE"
    static let newKey = "ROTATION_NEW_PUBLISHABLE_CLIENT_KEY"
    static let oldKey = "ROTATION_OLD_PUBLISHABLE_CLIENT_KEY"

    public func rendered() throws -> [UInt8] {
        var file = EnvFile(entries: [
            .init(key: Self.phaseKey, value: phase.rawValue),
            .init(key: Self.newKey, value: newPublishableKey.unredacted),
        ])
        for old in oldPublishableKeys {
            file.entries.append(.init(key: Self.oldKey, value: old.unredacted))
        }
        return try file.rendered()
    }

    /// Parses a journal; anything but the grammar above is `corruptState`, naming the line.
    public static func parse(_ bytes: [UInt8], source: String) throws -> RotationJournal {
        func corrupt(_ problem: String) -> RotationError {
            RotationError(.corruptState, "\(source): \(problem); it is written only by rotate-secrets, so restore the previous rotation's state or remove it and re-run with the same input")
        }
        let file: EnvFile
        do {
            file = try EnvFile.parse(bytes, source: source)
        } catch {
            throw corrupt("\(error)")
        }
        var phase: Phase?
        var new: Secret?
        var old: [Secret] = []
        for entry in file.entries {
            switch entry.key {
            case phaseKey:
                guard phase == nil else { throw corrupt("line \(entry.line): \(phaseKey) given twice") }
                guard let value = Phase(rawValue: entry.value) else {
                    throw corrupt("line \(entry.line): \(phaseKey) must be rewrite or restart")
                }
                phase = value
            case newKey:
                guard new == nil else { throw corrupt("line \(entry.line): \(newKey) given twice") }
                new = try key(entry, corrupt)
            case oldKey:
                old.append(try key(entry, corrupt))
            default:
                throw corrupt("line \(entry.line): unexpected key \(entry.key)")
            }
        }
        guard let phase else { throw corrupt("\(phaseKey) is missing") }
        guard let new else { throw corrupt("\(newKey) is missing") }
        return RotationJournal(phase: phase, newPublishableKey: new, oldPublishableKeys: old)
    }

    private static func key(_ entry: EnvFile.Entry, _ corrupt: (String) -> RotationError) throws -> Secret {
        do {
            return try Secret(validating: entry.value, name: entry.key)
        } catch {
            throw corrupt("line \(entry.line): \(error)")
        }
    }

    /// The journal at `path`, or nil when there is none (no rotation in progress).
    public static func read(path: String) throws -> RotationJournal? {
        let bytes: [UInt8]
        do {
            bytes = try POSIX.readFile(path, limit: 64 * 1024)
        } catch let error as StackError where error.errno == ENOENT {
            return nil
        } catch {
            throw RotationError(.corruptState, "read the rotation journal", underlying: error)
        }
        return try parse(bytes, source: path)
    }

    /// Replaces the journal atomically (0600, fsynced, directory fsynced).
    public func write(path: String) throws {
        do {
            try AtomicFile(path: path, mode: 0o600).write(try rendered())
        } catch {
            throw RotationError(.stateWrite, "write the rotation journal", underlying: error)
        }
    }

    /// Removes the journal and makes the removal durable. No journal is not an error.
    public static func remove(path: String) throws {
        if unlink(path) != 0 && errno != ENOENT {
            throw RotationError(.stateWrite, "remove the rotation journal \(path): \(StackError.describe(errno: errno))", errno: errno)
        }
        do {
            try AtomicFile.syncDirectory(Path.directory(of: path))
        } catch {
            throw RotationError(.stateWrite, "remove the rotation journal", underlying: error)
        }
    }
}
