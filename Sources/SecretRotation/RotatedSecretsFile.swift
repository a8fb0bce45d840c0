import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `rotated-secrets.env`: the four fresh secrets plus the three names the servers read
/// them under (§2.3 step 3), seven `KEY=value` lines in a fixed order, mode 0600.
public enum RotatedSecretsFile {
    /// The keys, in file order.
    public static let keys = [
        InternalSecrets.Name.publishableClientKey.variable,
        InternalSecrets.Name.secretServerKey.variable,
        InternalSecrets.Name.superSecretAdminKey.variable,
        InternalSecrets.Name.cronSecret.variable,
        "NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY",
        "STACK_SECRET_SERVER_KEY",
        "STACK_SUPER_SECRET_ADMIN_KEY",
    ]

    public static func envFile(for secrets: InternalSecrets) -> EnvFile {
        let values = [
            secrets.publishableClientKey, secrets.secretServerKey, secrets.superSecretAdminKey, secrets.cronSecret,
            secrets.publishableClientKey, secrets.secretServerKey, secrets.superSecretAdminKey,
        ]
        return EnvFile(entries: zip(keys, values).map { EnvFile.Entry(key: $0, value: $1.unredacted) })
    }

    public static func rendered(_ secrets: InternalSecrets) throws -> [UInt8] {
        try envFile(for: secrets).rendered()
    }

    /// What a previous rotation left: its exact bytes and the publishable key in them;
    /// nil when there is no file (no rotation happened in this container yet).
    public struct Existing: Sendable {
        public let bytes: [UInt8]
        public let publishableKey: Secret
    }

    public static func read(path: String) throws -> Existing? {
        let bytes: [UInt8]
        do {
            bytes = try POSIX.readFile(path, limit: 64 * 1024)
        } catch let error as StackError where error.errno == ENOENT {
            return nil
        } catch {
            throw RotationError(.corruptState, "read the previous rotated secrets", underlying: error)
        }
        do {
            let file = try EnvFile.parse(bytes, source: path)
            let name = InternalSecrets.Name.publishableClientKey.variable
            let key = try Secret(validating: file[name] ?? "", name: "\(name) in \(path)")
            return Existing(bytes: bytes, publishableKey: key)
        } catch {
            throw RotationError(.corruptState, "\(error); rotate-secrets writes this file, so it was changed by something else: remove it to rotate from the key the database holds")
        }
    }

    public static func write(_ secrets: InternalSecrets, to path: String) throws {
        do {
            try POSIX.makeDirectories(Path.directory(of: path), mode: 0o700)
            try AtomicFile(path: path, mode: 0o600).write(try rendered(secrets))
        } catch {
            throw RotationError(.stateWrite, "write \(path)", underlying: error)
        }
    }
}
