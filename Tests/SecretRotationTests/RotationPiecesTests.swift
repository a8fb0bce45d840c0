import Foundation
import SecretRotation
import StackCore
import Testing
import TestSupport

/// Configuration resolution, the journal format and the env file, in process.
@Suite struct RotationPiecesTests {
    /// §2.4-17: STACK_RUNTIME_WORK_DIR unset ⇒ /app; defaults for env file, socket,
    /// ports (<P>02/<P>01, P=81) and the programs.
    @Test func configurationDefaults() throws {
        let configuration = try RotationConfiguration.resolve(flags: RotationFlags(), environment: [:])
        #expect(configuration.workDirectory == "/app")
        #expect(configuration.appsDirectory == "/app/apps")
        #expect(configuration.envFilePath == "/run/stack-auth/rotated-secrets.env")
        #expect(configuration.journalPath == "/run/stack-auth/rotate-secrets.journal")
        #expect(configuration.databaseConnectionString == nil)
        let restart = try #require(configuration.restart)
        #expect(restart.socketPath == "/var/run/supervisor.sock")
        #expect(restart.programs == ["stack-app", "cron-jobs"])
        #expect(restart.listenPorts == [8102, 8101])
    }

    /// Environment and flags: the container's variables apply, flags win, malformed
    /// values are refused with the variable named.
    @Test func configurationFromEnvironmentAndFlags() throws {
        let environment = ["STACK_RUNTIME_WORK_DIR": "/w", "NEXT_PUBLIC_STACK_PORT_PREFIX": "92", "DASHBOARD_PORT": "7000",
                           "DB": "postgresql://x@/y", "STACK_SUPERVISOR_SOCKET": "/s.sock",
                           "STACK_ROTATED_SECRETS_FILE": "/var/lib/x/rotated.env"]
        var flags = RotationFlags()
        flags.databaseURLVariable = "DB"
        let configuration = try RotationConfiguration.resolve(flags: flags, environment: environment)
        #expect(configuration.workDirectory == "/w")
        #expect(configuration.databaseConnectionString == "postgresql://x@/y")
        #expect(configuration.restart?.listenPorts == [9202, 7000])
        #expect(configuration.restart?.socketPath == "/s.sock")
        #expect(configuration.envFilePath == "/var/lib/x/rotated.env")
        #expect(configuration.journalPath == "/var/lib/x/rotate-secrets.journal")

        flags.workDirectory = "/flag"
        flags.listenPorts = [1234]
        #expect(try RotationConfiguration.resolve(flags: flags, environment: environment).workDirectory == "/flag")
        #expect(try RotationConfiguration.resolve(flags: flags, environment: environment).restart?.listenPorts == [1234])
        #expect(try RotationConfiguration.resolve(flags: RotationFlags(), environment: ["STACK_ROTATE_NO_RESTART": "true"]).restart == nil)
        #expect(try RotationConfiguration.resolve(flags: RotationFlags(), environment: ["STACK_ROTATE_WAIT_LISTEN": "0"]).restart?.listenPorts == [])
        #expect(throws: RotationError.self) { try RotationConfiguration.resolve(flags: RotationFlags(), environment: ["BACKEND_PORT": "80x"]) }
        #expect(throws: RotationError.self) { try RotationConfiguration.resolve(flags: RotationFlags(), environment: ["STACK_ROTATE_NO_RESTART": "maybe"]) }
    }

    /// The journal round-trips and holds publishable keys only; anything else in it is
    /// `corruptState` (it is never evaluated, §5.4 #6).
    @Test func journalRoundTripsAndRejectsJunk() throws {
        let journal = RotationJournal(phase: .rewrite, newPublishableKey: .generate(), oldPublishableKeys: [.generate(), .generate()])
        let bytes = try journal.rendered()
        #expect(try RotationJournal.parse(bytes, source: "j") == journal)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.split(separator: "\n").count == 4)
        for junk in ["", "ROTATION_PHASE=rewrite\n", "ROTATION_PHASE=other\nROTATION_NEW_PUBLISHABLE_CLIENT_KEY=\(Secret.generate().unredacted)\n",
                     text + "CRON_SECRET=\(Secret.generate().unredacted)\n", text.replacingOccurrences(of: "=", with: " = ")] {
            #expect(throws: RotationError.self) { try RotationJournal.parse(Array(junk.utf8), source: "j") }
        }
    }

    /// §2.4-5, §2.4-6: seven keys in order, the mirrors equal PCK/SSK/SAK.
    @Test func envFileHasTheSevenLinesInOrder() throws {
        let secrets = InternalSecrets.generate()
        let file = RotatedSecretsFile.envFile(for: secrets)
        #expect(file.keys == ["STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY", "STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY",
                              "STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY", "CRON_SECRET", "NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY",
                              "STACK_SECRET_SERVER_KEY", "STACK_SUPER_SECRET_ADMIN_KEY"])
        #expect(file["NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY"] == secrets.publishableClientKey.unredacted)
        #expect(file["STACK_SECRET_SERVER_KEY"] == secrets.secretServerKey.unredacted)
        #expect(file["STACK_SUPER_SECRET_ADMIN_KEY"] == secrets.superSecretAdminKey.unredacted)
        #expect(try RotatedSecretsFile.rendered(secrets) == RotationWorld.expectedEnvFile(secrets))
    }
}
