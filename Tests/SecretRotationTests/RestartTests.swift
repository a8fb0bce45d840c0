import Foundation
import StackCore
import StackProcess
import Supervisord
import Testing
import TestSupport

/// rotate-secrets against a real supervisord whose `stack-app` is the real
/// stack-entrypoint running the Node fixture servers (backend, dashboard) and whose
/// `cron-jobs` is a small loop; both read rotated-secrets.env at start.
@Suite struct RestartTests {
    static let fixtureApps: String = {
        let tests = Path.directory(of: Path.directory(of: #filePath))
        return Path.join(tests, "Fixtures/app/apps")
    }()

    static var entrypointPath: String { Path.join(RotationWorld.binDirectory, "stack-entrypoint") }

    /// A world holding a copy of the fixture app as built (sentinels unreplaced), where
    /// the PCK will be after stack-entrypoint's first start.
    static func fixtureWorld() async throws -> RotationWorld {
        var world = try await RotationWorld.make()
        try await TestShell.run("cp -R '\(fixtureApps)/.' '\(world.appsDirectory)/'")
        for file in ["backend/bundle.js", "dashboard/bundle.js", "dashboard/page.html"] { world.trackKeyFile(file) }
        return world
    }

    /// The real stack-entrypoint as `stack-app`, configured as in the emulator container
    /// (WORK_DIR = the app tree, local-emulator mode, placeholders in the container
    /// environment, the rotated-secrets overlay); `cron-jobs` reads the overlay as
    /// run-cron-jobs.sh does (test-only shell) and loops.
    static func programs(_ world: RotationWorld, backendPort: Int, dashboardPort: Int) -> [SupervisordProgram] {
        var environment = world.environment(nil)
        environment["NEXT_PUBLIC_STACK_IS_LOCAL_EMULATOR"] = "true"
        environment["STACK_SKIP_MIGRATIONS"] = "true"
        environment["STACK_SKIP_SEED_SCRIPT"] = "true"
        environment["BACKEND_PORT"] = String(backendPort)
        environment["DASHBOARD_PORT"] = String(dashboardPort)
        let app = SupervisordProgram(
            name: "stack-app",
            command: "\(entrypointPath) --app-dir \(world.workDirectory) --work-dir \(world.workDirectory) --rotated-secrets \(world.envFilePath)",
            environment: environment, autorestart: "unexpected", stopWaitSeconds: 10, stopAsGroup: true, killAsGroup: true)
        let cron = SupervisordProgram(name: "cron-jobs", script: """
            set -a; [ -f "$ROTATED_SECRETS" ] && . "$ROTATED_SECRETS"; set +a
            exec /bin/sh -c 'while :; do sleep 1; done'
            """, environment: ["ROTATED_SECRETS": world.envFilePath, "PATH": Command.defaultSearchPath,
                               "CRON_SECRET": InternalSecrets.Name.cronSecret.placeholder],
            stopAsGroup: true, killAsGroup: true)
        return [app, cron]
    }

    struct ServerView: Sendable {
        let pid: Int32
        let environment: [String: String]
        let bundle: String
    }

    /// GET /env once (no retry: the caller says the server is up).
    static func view(port: Int) async throws -> ServerView {
        let body = try await TestShell.run("curl -sf --max-time 10 http://127.0.0.1:\(port)/env")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        return ServerView(pid: Int32(try #require(json["pid"] as? Int)),
                          environment: try #require(json["env"] as? [String: String]),
                          bundle: json["bundle"] as? String ?? "")
    }

    static func waitForServer(port: Int) async throws -> ServerView {
        var delay = Duration.milliseconds(10)
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            if let view = try? await view(port: port) { return view }
            guard ContinuousClock.now < deadline else { throw StackError(.systemCall, "fixture server on \(port) did not answer") }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .milliseconds(200))
        }
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0 else { throw StackError.systemCall("bind", errno: errno) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Gone or a zombie: no longer running.
    static func isGone(_ pid: Int32) -> Bool {
        guard let stat = try? POSIX.readFile("/proc/\(pid)/stat") else { return true }
        let text = String(decoding: stat, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return true }
        return text[text.index(close, offsetBy: 2)] == "Z"
    }

    static func environ(_ pid: Int32) throws -> [String: String] {
        var result: [String: String] = [:]
        for entry in try POSIX.readFile("/proc/\(pid)/environ").split(separator: 0) {
            let text = String(decoding: entry, as: UTF8.self)
            if let equals = text.firstIndex(of: "=") { result[String(text[..<equals])] = String(text[text.index(after: equals)...]) }
        }
        return result
    }

    /// §2.4-14, §2.4-15 (keys reach the servers), §5.5-8, §5.5-9 (cron sees the new
    /// CRON_SECRET), §5.4 #4: when rotate-secrets returns, both programs have new pids,
    /// the old Node servers are gone, and the servers answering on the ports — on the
    /// first request, no retry — are the new generation with the new keys in their
    /// environment and their bundles.
    @Test func restartedServersSeeNewKeysAndOldGenerationIsGone() async throws {
        let world = try await Self.fixtureWorld()
        defer { world.remove() }
        let (backendPort, dashboardPort) = (try Self.freePort(), try Self.freePort())
        try await SupervisordServer.with(programs: Self.programs(world, backendPort: backendPort, dashboardPort: dashboardPort)) { supervisord in
            let client = SupervisordClient(socketPath: supervisord.socketPath)
            let oldBackend = try await Self.waitForServer(port: backendPort)
            let oldDashboard = try await Self.waitForServer(port: dashboardPort)
            // The first start replaced the PCK sentinel by the container's placeholder.
            #expect(oldBackend.bundle.contains(RotationWorld.placeholders.publishableClientKey.unredacted))
            #expect(oldBackend.environment["NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY"] == RotationWorld.placeholders.publishableClientKey.unredacted)
            let oldPrograms = try await client.allProcessInfo()

            let secrets = InternalSecrets.generate()
            let output = try await world.rotate(secrets, supervisorSocket: supervisord.socketPath,
                                                environment: ["BACKEND_PORT": String(backendPort), "DASHBOARD_PORT": String(dashboardPort)])
            #expect(output.status == .exited(0), "\(output.combinedText)\n\(supervisord.diagnostics())")
            #expect(output.standardOutputText.contains("new generation listening on port(s) \(backendPort), \(dashboardPort)"))
            #expect(output.revealsNothing(of: secrets))

            let backend = try await Self.view(port: backendPort)
            let dashboard = try await Self.view(port: dashboardPort)
            #expect(backend.pid != oldBackend.pid && dashboard.pid != oldDashboard.pid)
            #expect(Self.isGone(oldBackend.pid) && Self.isGone(oldDashboard.pid))
            let pck = secrets.publishableClientKey.unredacted
            for server in [backend, dashboard] {
                #expect(server.environment["STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY"] == pck)
                #expect(server.environment["NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY"] == pck)
                #expect(server.environment["STACK_SECRET_SERVER_KEY"] == secrets.secretServerKey.unredacted)
                #expect(server.environment["STACK_SUPER_SECRET_ADMIN_KEY"] == secrets.superSecretAdminKey.unredacted)
                #expect(server.bundle.contains(pck))
                #expect(!server.bundle.contains(RotationWorld.placeholders.publishableClientKey.unredacted))
            }
            let newPrograms = try await client.allProcessInfo()
            for program in newPrograms {
                let old = oldPrograms.first { $0.name == program.name }
                #expect(program.state == .running && program.pid != nil && program.pid != old?.pid, "\(program)")
            }
            let cronPid = try #require(newPrograms.first { $0.name == "cron-jobs" }?.pid)
            #expect(try Self.environ(cronPid)["CRON_SECRET"] == secrets.cronSecret.unredacted)
            try await world.expectConsistent(with: secrets, formerKeys: [RotationWorld.placeholders.publishableClientKey])
        }
    }

    /// §2.4-13 (analogue): the database step fails (no row) ⇒ non-zero exit and
    /// supervisord is not asked to restart anything (same pids).
    @Test func databaseFailureDoesNotRestart() async throws {
        let world = try await RotationWorld.make()
        defer { world.remove() }
        try await world.database!.psql(#"DELETE FROM "ApiKeySet""#)
        try await SupervisordServer.with(programs: CrashSafetyTests.supervisorPrograms()) { supervisord in
            let client = SupervisordClient(socketPath: supervisord.socketPath)
            let before = try await client.waitUntilRunning(["stack-app", "cron-jobs"], timeout: .seconds(20)).map(\.pid)
            let output = try await world.rotate(.generate(), supervisorSocket: supervisord.socketPath, flags: ["--no-wait-listen"])
            #expect(output.status == .exited(1))
            #expect(try await client.allProcessInfo().sorted { $0.name > $1.name }.map(\.pid) == before)
        }
    }

    /// A restart supervisord refuses (no cron-jobs program) ⇒ non-zero exit with
    /// supervisord's own message; the journal stays "restart pending" so a re-run retries.
    @Test func restartFailureReportsSupervisordsMessage() async throws {
        let world = try await RotationWorld.make()
        defer { world.remove() }
        try await SupervisordServer.with(programs: [CrashSafetyTests.supervisorPrograms()[0]]) { supervisord in
            let output = try await world.rotate(.generate(), supervisorSocket: supervisord.socketPath, flags: ["--no-wait-listen"])
            #expect(output.status == .exited(1))
            #expect(output.standardOutputText.contains("BAD_NAME: cron-jobs"), "\(output.combinedText)")
            let journal = String(decoding: try POSIX.readFile(world.journalPath), as: UTF8.self)
            #expect(journal.hasPrefix("ROTATION_PHASE=restart\n"))
        }
    }

    /// The mode for images without supervisord: STACK_ROTATE_NO_RESTART=1 (or
    /// --no-restart) rotates everything but leaves the programs alone.
    @Test func noRestartModeLeavesProgramsRunning() async throws {
        let world = try await RotationWorld.make()
        defer { world.remove() }
        try await SupervisordServer.with(programs: CrashSafetyTests.supervisorPrograms()) { supervisord in
            let client = SupervisordClient(socketPath: supervisord.socketPath)
            let before = try await client.waitUntilRunning(["stack-app", "cron-jobs"], timeout: .seconds(20)).map(\.pid)
            let secrets = InternalSecrets.generate()
            let output = try await world.rotate(secrets, supervisorSocket: supervisord.socketPath,
                                                environment: ["STACK_ROTATE_NO_RESTART": "1"])
            #expect(output.status == .exited(0), "\(output.combinedText)")
            #expect(output.standardOutputText.contains("restart skipped"))
            #expect(try await client.allProcessInfo().sorted { $0.name > $1.name }.map(\.pid) == before)
            try await world.expectConsistent(with: secrets, formerKeys: [RotationWorld.placeholders.publishableClientKey])
        }
    }
}

extension RestartTests {
    /// A new generation that dies instead of listening fails the rotation at once with
    /// supervisord's view of it, not after the listen timeout.
    @Test func generationThatDiesFailsWithoutWaitingForTheDeadline() async throws {
        let world = try await RotationWorld.make()
        defer { world.remove() }
        let marker = world.directory.file("started-once")
        let app = SupervisordProgram(name: "stack-app", script: """
            if [ -e '\(marker)' ]; then sleep 2; echo 'cannot listen' >&2; exit 3; fi
            : > '\(marker)'
            exec sleep 100000
            """, autorestart: "false", stopAsGroup: true, killAsGroup: true)
        let programs = [app, CrashSafetyTests.supervisorPrograms()[1]]
        try await SupervisordServer.with(programs: programs) { supervisord in
            let started = ContinuousClock.now
            let output = try await world.rotate(.generate(), supervisorSocket: supervisord.socketPath,
                                                flags: ["--wait-for-port", String(try Self.freePort()), "--listen-timeout", "60"])
            #expect(output.status == .exited(1))
            #expect(output.standardOutputText.contains("stack-app stopped while waiting for the new servers to listen"), "\(output.combinedText)")
            #expect(started.duration(to: .now) < .seconds(30))
        }
    }
}
