import StackCore
import StackProcess
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The real `rotate-secrets` binary against a real PostgreSQL database and a work tree
/// (restart off here; see `RestartTests` for supervisord).
@Suite struct RotateSecretsTests {
    static func fresh() -> InternalSecrets { .generate() }

    /// §2.4-1, §2.4-5, §2.4-6, §2.4-7 (every file, not only *.js: §5.4 #28), §2.4-11:
    /// exit 0 ending with "done"; env file 0600 with exactly the seven lines in order;
    /// every file holding the placeholder PCK, whatever its extension, holds the new one,
    /// its mode kept; other files untouched; the row holds the keys with a newer updatedAt;
    /// no secret in the output.
    @Test func rotationUpdatesEnvFileEveryFileAndTheRow() async throws {
        var world = try await RotationWorld.make()
        defer { world.remove() }
        try world.addFile("backend/bundle.js", "const k=\"{KEY}\";")
        try world.addFile("dashboard/.next/server/app/page.html", "<meta content=\"{KEY}\">{KEY}", mode: 0o640)
        try world.addFile("dashboard/.next/server/app/page.rsc", "1:{KEY}")
        try world.addFile("dashboard/.next/prerender-manifest.json", "{\"k\":\"{KEY}\"}")
        try world.addFile("dashboard/NOEXT", "{KEY}", mode: 0o755)
        try world.addFile("dashboard/font.bin", [0, 0xFF] + Array(RotationWorld.placeholders.publishableClientKey.unredacted.utf8) + [0x80], holdsKey: true)
        try world.addFile("backend/other.js", "no key here")
        let untouched = try world.status("backend/other.js")
        let before = try await world.rowUpdatedAt()

        let secrets = Self.fresh()
        let output = try await world.rotate(secrets)
        #expect(output.status == .exited(0), "\(output.combinedText)")
        #expect(output.standardOutputText.hasSuffix("[rotate-secrets] done\n"))
        #expect(output.revealsNothing(of: secrets))
        try await world.expectConsistent(with: secrets, formerKeys: [RotationWorld.placeholders.publishableClientKey])

        var st = stat()
        #expect(stat(world.envFilePath, &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(try world.status("dashboard/.next/server/app/page.html").st_mode & 0o777 == 0o640)
        #expect(try world.status("dashboard/NOEXT").st_mode & 0o777 == 0o755)
        #expect(try world.status("backend/other.js").st_ino == untouched.st_ino)
        #expect(try world.read("dashboard/.next/server/app/page.html") == Array("<meta content=\"\(secrets.publishableClientKey.unredacted)\">\(secrets.publishableClientKey.unredacted)".utf8))
        #expect(try await world.rowUpdatedAt() > before)
        #expect(!POSIX.exists(world.journalPath))
    }

    /// §2.4-2, §2.4-3 and §5.4 #27: each variable missing, empty, of the wrong length,
    /// not hex, or the build placeholder ⇒ exit 1, an error naming that variable, and
    /// nothing written: no env file, no journal, no file and no row changed.
    @Test(arguments: InternalSecrets.Name.allCases)
    func rotationRejectsBadInputNamingTheVariable(_ name: InternalSecrets.Name) async throws {
        var world = try await RotationWorld.make()
        defer { world.remove() }
        try world.addFile("a.js", "{KEY}")
        let before = try world.read("a.js")
        let valid = Self.fresh()
        let bad: [(String?, String)] = [
            (nil, "missing"), ("", "missing"), (String(repeating: "a", count: 63), "64-character"),
            (String(repeating: "a", count: 65), "64-character"), (String(repeating: "g", count: 64), "64-character"),
            (name.placeholder, "placeholder"), (name.placeholder.uppercased(), "placeholder"),
        ]
        for (value, problem) in bad {
            var environment = world.environment(valid)
            environment[name.variable] = value
            let output = try await Command(RotationWorld.rotateSecretsPath, arguments: world.flags(), environment: environment).run(timeout: .seconds(60))
            #expect(output.status == .exited(1))
            #expect(output.standardOutputText.contains("ERROR: \(name.variable)"), "\(output.combinedText)")
            #expect(output.standardOutputText.contains(problem), "\(output.combinedText)")
            #expect(output.revealsNothing(of: valid))
            #expect(!POSIX.exists(world.envFilePath) && !POSIX.exists(world.journalPath))
            #expect(try world.read("a.js") == before)
            #expect(try await world.rowKeys()?.first == RotationWorld.placeholders.publishableClientKey.unredacted)
        }
    }

    /// §2.4-9 (adapted): the placeholder as new PCK is refused, so no file is modified;
    /// before, it "succeeded" and left everything on the public key (§5.4 #27).
    @Test func rotationRejectsPlaceholderKey() async throws {
        var world = try await RotationWorld.make()
        defer { world.remove() }
        try world.addFile("a.js", "{KEY}")
        let inode = try world.status("a.js").st_ino
        var secrets = Self.fresh()
        secrets.publishableClientKey = RotationWorld.placeholders.publishableClientKey
        let output = try await world.rotate(secrets)
        #expect(output.status == .exited(1))
        #expect(output.standardOutputText.contains("STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY is the public build placeholder"))
        #expect(try world.status("a.js").st_ino == inode)
    }

    /// §2.4-4: upper-case hex is accepted and written as given.
    @Test func uppercaseHexIsAccepted() async throws {
        var world = try await RotationWorld.make()
        defer { world.remove() }
        try world.addFile("a.js", "{KEY}")
        let lower = Self.fresh()
        let secrets = InternalSecrets(
            publishableClientKey: try Secret(validating: lower.publishableClientKey.unredacted.uppercased(), name: "x"),
            secretServerKey: try Secret(validating: lower.secretServerKey.unredacted.uppercased(), name: "x"),
            superSecretAdminKey: lower.superSecretAdminKey, cronSecret: try Secret(validating: lower.cronSecret.unredacted.uppercased(), name: "x"))
        let output = try await world.rotate(secrets)
        #expect(output.status == .exited(0), "\(output.combinedText)")
        try await world.expectConsistent(with: secrets, formerKeys: [RotationWorld.placeholders.publishableClientKey])
    }

    /// §5.4 #29, §2.4-10: running twice with the same input is a no-op that succeeds (no
    /// file, env file or row written); new input rotates again from the current key,
    /// which is no longer the placeholder.
    @Test func rotationIsIdempotentAndRotatesAgain() async throws {
        var world = try await RotationWorld.make()
        defer { world.remove() }
        try world.addGeneratedTree(count: 40, keyEvery: 3)
        let first = Self.fresh()
        let run1 = try await world.rotate(first)
        #expect(run1.status == .exited(0), "\(run1.combinedText)")
        let inodes = try world.keyFiles.map { try world.status($0).st_ino }
        var envStat = stat()
        _ = stat(world.envFilePath, &envStat)
        let updatedAt = try await world.rowUpdatedAt()

        let run2 = try await world.rotate(first)
        #expect(run2.status == .exited(0), "\(run2.combinedText)")
        #expect(run2.standardOutputText.contains("already hold these secrets; nothing to do"))
        #expect(try world.keyFiles.map { try world.status($0).st_ino } == inodes)
        var envStat2 = stat()
        _ = stat(world.envFilePath, &envStat2)
        #expect(envStat2.st_ino == envStat.st_ino)
        #expect(try await world.rowUpdatedAt() == updatedAt)

        let second = Self.fresh()
        let run3 = try await world.rotate(second)
        #expect(run3.status == .exited(0), "\(run3.combinedText)")
        #expect(run3.standardOutputText.contains("patched \(world.keyFiles.count) file(s)"))
        try await world.expectConsistent(with: second, formerKeys: [RotationWorld.placeholders.publishableClientKey, first.publishableClientKey])
    }

    /// §2.4-10: no file holds the current key ⇒ the "already rotated?" message, exit 0.
    @Test func noFileWithTheKeyStillSucceeds() async throws {
        var world = try await RotationWorld.make()
        defer { world.remove() }
        try world.addFile("a.js", "nothing")
        let secrets = Self.fresh()
        let output = try await world.rotate(secrets)
        #expect(output.status == .exited(0), "\(output.combinedText)")
        #expect(output.standardOutputText.contains("(already rotated?)"))
        try await world.expectConsistent(with: secrets, formerKeys: [])
    }

    /// The issue: a missing ApiKeySet row is an error, found before anything changed.
    @Test func missingRowFailsBeforeAnythingChanges() async throws {
        var world = try await RotationWorld.make()
        defer { world.remove() }
        try world.addFile("a.js", "{KEY}")
        try await world.database!.psql(#"DELETE FROM "ApiKeySet""#)
        let output = try await world.rotate(Self.fresh())
        #expect(output.status == .exited(1))
        #expect(output.standardOutputText.contains("no internal ApiKeySet row"), "\(output.combinedText)")
        #expect(!POSIX.exists(world.envFilePath) && !POSIX.exists(world.journalPath))
        #expect(try world.read("a.js") == Array(RotationWorld.placeholders.publishableClientKey.unredacted.utf8))
    }

    /// §2.4-12: without a connection string no database is touched (the row keeps the
    /// placeholder keys) and the rest of the rotation happens.
    @Test func withoutConnectionStringTheRowIsNotTouched() async throws {
        var world = try await RotationWorld.make()
        defer { world.remove() }
        try world.addFile("a.js", "{KEY}")
        let secrets = Self.fresh()
        let output = try await world.rotate(secrets, environment: ["STACK_DATABASE_CONNECTION_STRING": ""])
        #expect(output.status == .exited(0), "\(output.combinedText)")
        #expect(output.standardOutputText.contains("no database connection string"))
        #expect(try await world.rowKeys()?.first == RotationWorld.placeholders.publishableClientKey.unredacted)
        #expect(try world.read("a.js") == Array(secrets.publishableClientKey.unredacted.utf8))
    }

    /// §2.4-16: STACK_ROTATE_INPUT names an env file that supplies the values when no
    /// -e variables are given; it is parsed, never executed (§5.4 #6).
    @Test func rotateInputFileSuppliesValuesAndIsNeverExecuted() async throws {
        var world = try await RotationWorld.make()
        defer { world.remove() }
        try world.addFile("a.js", "{KEY}")
        let secrets = Self.fresh()
        let input = world.directory.file("fresh.env")
        try AtomicFile(path: input, mode: 0o600).write(secrets.payload)
        let output = try await world.rotate(nil, environment: ["STACK_ROTATE_INPUT": input])
        #expect(output.status == .exited(0), "\(output.combinedText)")
        #expect(output.standardOutputText.contains("reading fresh secrets from \(input)"))
        try await world.expectConsistent(with: secrets, formerKeys: [RotationWorld.placeholders.publishableClientKey])

        let marker = world.directory.file("executed")
        try AtomicFile(path: input, mode: 0o600).write(Array("touch \(marker)\n".utf8) + secrets.payload)
        let evil = try await world.rotate(nil, environment: ["STACK_ROTATE_INPUT": input])
        #expect(evil.status == .exited(1))
        #expect(!POSIX.exists(marker))
    }

    /// The database refuses the UPDATE after files were rewritten (§2.4-13): non-zero
    /// exit, the journal stays; once the database accepts again, one re-run with the same
    /// input leaves everything consistent.
    @Test func databaseFailureLeavesAJournalThatTheRerunFinishes() async throws {
        var world = try await RotationWorld.make()
        defer { world.remove() }
        try world.addGeneratedTree(count: 20, keyEvery: 2)
        let database = try #require(world.database)
        try await database.psql(#"REVOKE UPDATE ON "ApiKeySet" FROM stack_app"#)
        let limited = ["STACK_DATABASE_CONNECTION_STRING": database.connectionString(password: PostgresTestDatabase.passwordRolePassword)]
        let secrets = Self.fresh()
        let failed = try await world.rotate(secrets, environment: limited)
        #expect(failed.status == .exited(1))
        #expect(failed.standardOutputText.contains("update the internal ApiKeySet"), "\(failed.combinedText)")
        #expect(!failed.combinedText.contains(PostgresTestDatabase.passwordRolePassword))
        #expect(POSIX.exists(world.journalPath))

        try await database.psql(#"GRANT UPDATE ON "ApiKeySet" TO stack_app"#)
        let rerun = try await world.rotate(secrets, environment: limited)
        #expect(rerun.status == .exited(0), "\(rerun.combinedText)")
        try await world.expectConsistent(with: secrets, formerKeys: [RotationWorld.placeholders.publishableClientKey])
        #expect(!POSIX.exists(world.journalPath))
    }
}

extension RotateSecretsTests {
    /// A work directory without apps/ is a configuration error found before anything
    /// changed (the shell version silently "patched 0 files").
    @Test func missingAppsDirectoryFailsBeforeAnythingChanges() async throws {
        let world = try await RotationWorld.make()
        defer { world.remove() }
        let output = try await world.rotate(Self.fresh(), environment: ["STACK_RUNTIME_WORK_DIR": world.directory.file("nowhere")])
        #expect(output.status == .exited(1))
        #expect(output.standardOutputText.contains("nowhere/apps is not a directory"), "\(output.combinedText)")
        #expect(!POSIX.exists(world.envFilePath) && !POSIX.exists(world.journalPath))
        #expect(try await world.rowKeys()?.first == RotationWorld.placeholders.publishableClientKey.unredacted)
    }
}
