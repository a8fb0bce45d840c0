import CSystem
import StackCore
import StackProcess
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// One test's container stand-in: a work tree whose files carry the publishable key, a
/// state directory for rotated-secrets.env and the journal, a fresh PostgreSQL database
/// holding the internal ApiKeySet row (as the entrypoint's start-up upsert leaves it),
/// and the real `rotate-secrets` binary to run against them.
struct RotationWorld {
    static let placeholders = InternalSecrets(
        publishableClientKey: try! Secret(validating: InternalSecrets.Name.publishableClientKey.placeholder, name: "p"),
        secretServerKey: try! Secret(validating: InternalSecrets.Name.secretServerKey.placeholder, name: "p"),
        superSecretAdminKey: try! Secret(validating: InternalSecrets.Name.superSecretAdminKey.placeholder, name: "p"),
        cronSecret: try! Secret(validating: InternalSecrets.Name.cronSecret.placeholder, name: "p"))

    let directory: TemporaryDirectory
    let database: PostgresTestDatabase?
    var workDirectory: String { directory.file("app") }
    var appsDirectory: String { directory.file("app/apps") }
    var stateDirectory: String { directory.file("state") }
    var envFilePath: String { directory.file("state/rotated-secrets.env") }
    var journalPath: String { directory.file("state/rotate-secrets.journal") }
    /// Files (relative to apps/) that held the publishable key at set-up.
    private(set) var keyFiles: [String] = []
    /// Files that never held it, with their content.
    private(set) var otherFiles: [String: [UInt8]] = [:]

    /// `withDatabase`: create a database with the row holding `initial`'s keys.
    static func make(withDatabase: Bool = true, initial: InternalSecrets = RotationWorld.placeholders) async throws -> RotationWorld {
        let directory = try TemporaryDirectory(prefix: "rot")
        var database: PostgresTestDatabase?
        if withDatabase {
            let created = try await PostgresServer.testDatabase()
            try await created.psql("""
                INSERT INTO "ApiKeySet" ("projectId", id, description, "expiresAt", "createdAt", "updatedAt",
                    "publishableClientKey", "secretServerKey", "superSecretAdminKey")
                VALUES ('internal', '3142e763-b230-44b5-8636-aa62f7489c26', 'Internal API key set', '2099-12-31 23:59:59',
                    '2001-01-01 00:00:00', '2001-01-01 00:00:00',
                    '\(initial.publishableClientKey.unredacted)', '\(initial.secretServerKey.unredacted)', '\(initial.superSecretAdminKey.unredacted)')
                """)
            database = created
        }
        try POSIX.makeDirectories(directory.file("app/apps"))
        return RotationWorld(directory: directory, database: database)
    }

    func remove() { directory.remove() }

    // MARK: tree

    /// Writes `content` (with `{KEY}` standing for `key`) at `relative` under apps/.
    mutating func addFile(_ relative: String, _ content: String, key: Secret = RotationWorld.placeholders.publishableClientKey, mode: mode_t = 0o644) throws {
        try addFile(relative, Array(content.replacingKeyMarker(with: key.unredacted).utf8), mode: mode, holdsKey: content.contains("{KEY}"))
    }

    mutating func addFile(_ relative: String, _ bytes: [UInt8], mode: mode_t = 0o644, holdsKey: Bool) throws {
        let path = Path.join(appsDirectory, relative)
        try POSIX.makeDirectories(Path.directory(of: path))
        try AtomicFile(path: path, mode: mode).write(bytes)
        if holdsKey { keyFiles.append(relative) } else { otherFiles[relative] = bytes }
    }

    /// A tree like a built app: `count` files of a few KiB in nested directories, every
    /// `keyEvery`-th holding the key (twice), in all sorts of extensions.
    mutating func addGeneratedTree(count: Int, keyEvery: Int, key: Secret = RotationWorld.placeholders.publishableClientKey) throws {
        let extensions = ["js", "html", "rsc", "json", "map", "txt", ""]
        let filler = String(repeating: "const a=1;function f(x){return x+1}\n", count: 60)
        for index in 0..<count {
            let ext = extensions[index % extensions.count]
            let name = "gen/d\(index % 13)/s\(index % 5)/f\(index)" + (ext.isEmpty ? "" : ".\(ext)")
            if index % keyEvery == 0 {
                try addFile(name, "\(filler)pk=\"{KEY}\";\(filler)x={KEY}\n", key: key)
            } else {
                try addFile(name, filler + "\(index)\n", key: key)
            }
        }
    }

    /// Registers a file some other process will put the key in (e.g. stack-entrypoint's
    /// sentinel pass).
    mutating func trackKeyFile(_ relative: String) {
        keyFiles.append(relative)
    }

    func read(_ relative: String) throws -> [UInt8] {
        try POSIX.readFile(Path.join(appsDirectory, relative))
    }

    func status(_ relative: String) throws -> stat {
        var st = stat()
        guard lstat(Path.join(appsDirectory, relative), &st) == 0 else { throw StackError.systemCall("lstat \(relative)", errno: errno) }
        return st
    }

    // MARK: running rotate-secrets

    static var binDirectory: String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let exe = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ".build/debug/x"
        return Path.directory(of: exe)
    }

    static var rotateSecretsPath: String { Path.join(binDirectory, "rotate-secrets") }
    static var triggerPath: String { Path.join(binDirectory, "trigger-fast-rotate") }

    /// The container environment rotate-secrets inherits (as `docker exec` gives it), with
    /// `secrets` as the `-e` values (nil: none given, the container's placeholders remain).
    func environment(_ secrets: InternalSecrets?, extra: [String: String] = [:]) -> [String: String] {
        var environment: [String: String] = ["PATH": Command.defaultSearchPath, "STACK_RUNTIME_WORK_DIR": workDirectory]
        for name in InternalSecrets.Name.allCases {
            environment[name.variable] = secrets?[name].unredacted ?? name.placeholder
        }
        if let database { environment["STACK_DATABASE_CONNECTION_STRING"] = database.connectionString }
        environment.merge(extra, uniquingKeysWith: { _, new in new })
        return environment
    }

    /// Flags every run gets: private env file path; restart off unless a socket is given.
    func flags(supervisorSocket: String? = nil, extra: [String] = []) -> [String] {
        var flags = ["--env-file-path", envFilePath]
        if let supervisorSocket {
            flags += ["--supervisor-socket", supervisorSocket, "--restart-timeout", "30"]
        } else {
            flags.append("--no-restart")
        }
        return flags + extra
    }

    func rotate(_ secrets: InternalSecrets?, supervisorSocket: String? = nil, flags extraFlags: [String] = [],
                environment extra: [String: String] = [:]) async throws -> CommandOutput {
        try await Command(RotationWorld.rotateSecretsPath, arguments: flags(supervisorSocket: supervisorSocket, extra: extraFlags),
                          environment: environment(secrets, extra: extra)).run(timeout: .seconds(120))
    }

    // MARK: checks

    /// The row's three keys, or nil when there is no row.
    func rowKeys() async throws -> [String]? {
        guard let database else { return nil }
        let text = try await database.psql(#"""
            SELECT "publishableClientKey" || ' ' || "secretServerKey" || ' ' || "superSecretAdminKey"
            FROM "ApiKeySet" WHERE "projectId" = 'internal' AND id = '3142e763-b230-44b5-8636-aa62f7489c26'
            """#)
        return text.isEmpty ? nil : text.split(separator: " ").map(String.init)
    }

    func rowUpdatedAt() async throws -> String {
        try await database!.psql(#"SELECT "updatedAt" FROM "ApiKeySet" WHERE "projectId" = 'internal'"#)
    }

    /// What "consistent" means after a rotation to `secrets`: the env file is exactly the
    /// seven lines, every file that held the key holds `secrets`' PCK and none of
    /// `formerKeys`, the other files are unchanged, and the row holds the three keys.
    func expectConsistent(with secrets: InternalSecrets, formerKeys: [Secret], sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let env = try POSIX.readFile(envFilePath)
        #expect(env == RotationWorld.expectedEnvFile(secrets), "env file", sourceLocation: sourceLocation)
        let former = Set(formerKeys.map(\.unredacted)).subtracting([secrets.publishableClientKey.unredacted])
        for file in keyFiles {
            // One pass per file: the 64-character hex runs it holds (keys are the only ones).
            let keys = RotationWorld.hexKeys(in: try read(file))
            #expect(keys.contains(secrets.publishableClientKey.unredacted), "\(file) lacks the new key", sourceLocation: sourceLocation)
            #expect(keys.isDisjoint(with: former), "\(file) still holds a former key", sourceLocation: sourceLocation)
        }
        for (file, bytes) in otherFiles {
            #expect(try read(file) == bytes, "\(file) changed", sourceLocation: sourceLocation)
        }
        if database != nil {
            let row = try await rowKeys()
            #expect(row == [secrets.publishableClientKey.unredacted, secrets.secretServerKey.unredacted, secrets.superSecretAdminKey.unredacted],
                    "database row", sourceLocation: sourceLocation)
        }
    }

    /// Every maximal run of exactly 64 hex digits in `bytes`.
    static func hexKeys(in bytes: [UInt8]) -> Set<String> {
        var keys = Set<String>()
        var start = -1
        func isHex(_ byte: UInt8) -> Bool {
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66)
        }
        for index in 0...bytes.count {
            if index < bytes.count && isHex(bytes[index]) {
                if start < 0 { start = index }
            } else if start >= 0 {
                if index - start == 64 { keys.insert(String(decoding: bytes[start..<index], as: UTF8.self)) }
                start = -1
            }
        }
        return keys
    }

    static func expectedEnvFile(_ secrets: InternalSecrets) -> [UInt8] {
        let lines = [
            "STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY=\(secrets.publishableClientKey.unredacted)",
            "STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY=\(secrets.secretServerKey.unredacted)",
            "STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY=\(secrets.superSecretAdminKey.unredacted)",
            "CRON_SECRET=\(secrets.cronSecret.unredacted)",
            "NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY=\(secrets.publishableClientKey.unredacted)",
            "STACK_SECRET_SERVER_KEY=\(secrets.secretServerKey.unredacted)",
            "STACK_SUPER_SECRET_ADMIN_KEY=\(secrets.superSecretAdminKey.unredacted)",
        ]
        return Array((lines.joined(separator: "\n") + "\n").utf8)
    }
}

extension String {
    func replacingKeyMarker(with key: String) -> String {
        var result = ""
        var rest = Substring(self)
        while let range = rest.firstRange(of: "{KEY}") {
            result += rest[..<range.lowerBound]
            result += key
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}

extension Array where Element == UInt8 {
    func contains(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return needle.isEmpty }
        var index = 0
        while index + needle.count <= count {
            if self[index] == needle[0] && self[index..<(index + needle.count)].elementsEqual(needle) { return true }
            index += 1
        }
        return false
    }
}

extension CommandOutput {
    /// stdout + stderr, for failure messages and "never a secret" checks.
    var combinedText: String { standardOutputText + standardErrorText }

    /// No value of `secrets` appears in what the process printed.
    func revealsNothing(of secrets: InternalSecrets) -> Bool {
        InternalSecrets.Name.allCases.allSatisfy { !combinedText.contains(secrets[$0].unredacted) }
    }
}
