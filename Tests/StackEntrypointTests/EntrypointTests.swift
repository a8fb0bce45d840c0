import Foundation
import StackCore
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The real `stack-entrypoint` binary running the Node fixture servers.
@Suite(.serialized) struct EntrypointTests {
    /// §1.4-1, §1.4-2, §1.4-8, §1.4-9, §1.4-10, §1.4-14, §1.4-15, §1.4-16, §1.4-32
    @Test func serversSeeTheDerivedEnvironmentFromTheWorkDirectory() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        try EnvFile(["X": "1", "CRON_SECRET": "from-overlay"]).write(to: sandbox.overlayPath)
        let process = try sandbox.start([
            "CRON_SECRET": "from-container", "NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY": "caller-value",
            "STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY": "pck", "STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY": "ssk",
            "STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY": "sak", "NEXT_PUBLIC_STACK_API_URL": "http://api",
            "NEXT_PUBLIC_STACK_DASHBOARD_URL": "http://dash", "STACK_SVIX_SERVER_URL": "http://svix",
        ])
        defer { process.kill() }
        let (backend, dashboard) = try await process.waitForServers()
        for report in [backend, dashboard] {
            #expect(report.env["X"] == "1")
            #expect(report.env["CRON_SECRET"] == "from-overlay")
            #expect(report.env["NEXT_PUBLIC_STACK_PROJECT_ID"] == "internal")
            #expect(report.env["NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY"] == "pck")
            #expect(report.env["STACK_SECRET_SERVER_KEY"] == "ssk")
            #expect(report.env["STACK_SUPER_SECRET_ADMIN_KEY"] == "sak")
            #expect(report.env["NEXT_PUBLIC_BROWSER_STACK_API_URL"] == "http://api")
            #expect(report.env["NEXT_PUBLIC_BROWSER_STACK_DASHBOARD_URL"] == "http://dash")
            #expect(report.env["NEXT_PUBLIC_STACK_SVIX_SERVER_URL"] == "http://svix")
            #expect(report.env["USE_INLINE_ENV_VARS"] == "true")
            #expect(report.env["HOSTNAME"] == "0.0.0.0")
            #expect(report.cwd == sandbox.workDirectory)
        }
        #expect(backend.env["PORT"] == String(sandbox.backendPort))
        #expect(dashboard.env["PORT"] == String(sandbox.dashboardPort))
    }

    /// §1.4-6: non-emulator keys are generated (44-character base64), differently each start.
    @Test func missingKeysAreGeneratedFreshOnEachStart() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        var seen: [String] = []
        for _ in 0..<2 {
            let process = try sandbox.start()
            defer { process.kill() }
            let (backend, _) = try await process.waitForServers()
            for name in ["STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY", "STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY",
                         "STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY"] {
                let value = try #require(backend.env[name])
                #expect(value.count == 44 && value.hasSuffix("="))
                seen.append(value)
            }
            process.signal(SIGTERM)
            _ = try await process.waitForExit()
        }
        #expect(Set(seen).count == 6)
    }

    /// §1.4-28, §1.4-29, §1.4-30, §1.4-26, §1.4-31: sentinels replaced in every file of the
    /// copied tree, values byte for byte, unset/empty and bare tokens left.
    @Test func sentinelsAreReplacedByteForByteInTheCopiedTree() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        let special = "http://h/a&b\\c|d/é\"q\nline2"
        let process = try sandbox.start(["NEXT_PUBLIC_STACK_API_URL": special, "FIXTURE_UNSET_VARIABLE": "",
                                         "STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY": "the-pck"])
        defer { process.kill() }
        let (backend, dashboard) = try await process.waitForServers()
        let bundle = try #require(backend.bundle)
        #expect(bundle.contains("const api = \"\(special)\";"))
        #expect(bundle.contains("const key = \"the-pck\";"))
        #expect(bundle.contains("const inline = \"true\";"))
        #expect(bundle.contains("\"STACK_ENV_VAR_SENTINEL_FIXTURE_UNSET_VARIABLE\""))
        #expect(bundle.contains("const bare = \"STACK_ENV_VAR_SENTINEL\";"))
        #expect(dashboard.bundle?.contains("const key = \"the-pck\";") == true)
        let html = String(decoding: try POSIX.readFile(sandbox.workDirectory + "/apps/dashboard/page.html"), as: UTF8.self)
        #expect(html.contains("data-key=\"the-pck\""))
        let original = String(decoding: try POSIX.readFile(sandbox.appDirectory + "/apps/backend/bundle.js"), as: UTF8.self)
        #expect(original.contains("STACK_ENV_VAR_SENTINEL_NEXT_PUBLIC_STACK_API_URL"), "the image tree is never modified")
        #expect(POSIX.exists(sandbox.workDirectory + "/.stack-sentinels-replaced"))
    }

    /// §5.4-35: with a separate work directory every start re-copies, so the marker is not
    /// trusted and the new values are substituted.
    @Test func recopiedTreeIsRescannedDespiteTheMarker() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        for url in ["http://first", "http://second"] {
            let process = try sandbox.start(["NEXT_PUBLIC_STACK_API_URL": url])
            defer { process.kill() }
            let (backend, _) = try await process.waitForServers()
            #expect(backend.bundle?.contains("const api = \"\(url)\";") == true)
            process.signal(SIGTERM)
            _ = try await process.waitForExit()
        }
    }

    /// §1.4-27, §1.4-31, §5.5-13: in place (work dir = app dir) the marker skips the scan.
    @Test func inPlaceSubstitutionHappensOnce() async throws {
        let sandbox = try await EntrypointSandbox.make(inPlace: true)
        defer { sandbox.remove() }
        for url in ["http://first", "http://second"] {
            let process = try sandbox.start(["NEXT_PUBLIC_STACK_API_URL": url])
            defer { process.kill() }
            let (backend, _) = try await process.waitForServers()
            #expect(backend.bundle?.contains("const api = \"http://first\";") == true)
            process.signal(SIGTERM)
            _ = try await process.waitForExit()
            if url == "http://second" { #expect(process.log.contains("already replaced")) }
        }
    }

    /// §5.4-36: a tree without any sentinel is a normal start.
    @Test func treeWithoutSentinelsStartsNormally() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        try await TestShell.run("rm '\(sandbox.appDirectory)'/apps/*/bundle.js '\(sandbox.appDirectory)'/apps/dashboard/page.html")
        let process = try sandbox.start()
        defer { process.kill() }
        _ = try await process.waitForServers()
    }

    /// §1.4-17, §1.4-18, §1.4-19, §1.4-20
    @Test func migrationsThenSeedRunInAppsBackendAndCanBeSkipped() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        let (status, _) = try await sandbox.run(subcommand: ["prepare"])
        #expect(status == .exited(0))
        let backendDirectory = sandbox.appDirectory + "/apps/backend"
        #expect(String(decoding: try POSIX.readFile(sandbox.migrationLog), as: UTF8.self) == "migrate \(backendDirectory)\nseed \(backendDirectory)\n")

        try await TestShell.run("rm -f '\(sandbox.migrationLog)'")
        let (skipped, log) = try await sandbox.run(["STACK_SKIP_MIGRATIONS": "true", "STACK_RUN_SEED_SCRIPT": "false"], subcommand: ["prepare"])
        #expect(skipped == .exited(0))
        #expect(!POSIX.exists(sandbox.migrationLog))
        #expect(log.contains("Skipping migrations.") && log.contains("Skipping seed script."))
    }

    /// §1.4-18: a failing migration stops start-up; the servers never start.
    @Test func failingMigrationStopsStartUp() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        let (status, log) = try await sandbox.run(["FIXTURE_FAIL_MIGRATE": "1"])
        #expect(status == .exited(7))
        #expect(log.contains("db-migrations.mjs migrate failed"))
        #expect(!log.contains("Starting backend"))
        #expect(String(decoding: try POSIX.readFile(sandbox.migrationLog), as: UTF8.self).hasPrefix("migrate "))
    }

    /// Deliberate change 1 (§5.4-6): the overlay is parsed strictly; a bad line stops start-up.
    @Test func overlayWithABadLineStopsStartUpNamingTheLine() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        try AtomicFile(path: sandbox.overlayPath, mode: 0o600).write(Array("A=1\nexport B=$(touch /tmp/pwned)\n".utf8))
        let (status, log) = try await sandbox.run()
        #expect(status == .exited(1))
        #expect(log.contains("\(sandbox.overlayPath):2:"))
        #expect(!log.contains("Starting backend"))
    }

    /// §5.4-1: SIGTERM reaches both servers, which exit cleanly; so does the entrypoint.
    @Test func sigtermStopsBothServersAndExitsWithTheirCode() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        let process = try sandbox.start()
        defer { process.kill() }
        let (backend, dashboard) = try await process.waitForServers()
        process.signal(SIGTERM)
        #expect(try await process.waitForExit(timeout: .seconds(10)) == .exited(0))
        #expect(!isAlive(backend.pid) && !isAlive(dashboard.pid))
    }

    /// §1.4-33, §5.4-2: one server exiting stops the other; the exit code is the first's.
    @Test func oneServerCrashingStopsTheOther() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        let process = try sandbox.start()
        defer { process.kill() }
        let (_, dashboard) = try await process.waitForServers()
        _ = try? await HTTPGet.get(port: sandbox.backendPort, path: "/exit?code=5")
        #expect(try await process.waitForExit(timeout: .seconds(10)) == .exited(5))
        #expect(await waitUntilGone(dashboard.pid))
    }

    /// A server ignoring SIGTERM is killed after the grace period (3 s here).
    @Test func serverIgnoringSigtermIsKilledAfterTheGrace() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        let process = try sandbox.start(["FIXTURE_IGNORE_TERM": "1"])
        defer { process.kill() }
        let (backend, dashboard) = try await process.waitForServers()
        let started = ContinuousClock.now
        process.signal(SIGTERM)
        let status = try await process.waitForExit(timeout: .seconds(20))
        #expect(status == .exited(128 + SIGKILL))
        #expect(ContinuousClock.now - started >= .seconds(3))
        #expect(!isAlive(backend.pid) && !isAlive(dashboard.pid))
    }

    /// A grandchild that daemonizes (new session, reparented to the entrypoint as
    /// subreaper) is still stopped when the entrypoint stops.
    @Test func daemonizedGrandchildIsCleanedUp() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        let marker = sandbox.directory.file("daemon")
        let process = try sandbox.start(["FIXTURE_SPAWN_DAEMON": marker])
        defer { process.kill() }
        _ = try await process.waitForServers()
        let daemon = try #require(Int32(String(decoding: try POSIX.readFile(marker + ".backend"), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(isAlive(daemon))
        process.signal(SIGTERM)
        _ = try await process.waitForExit(timeout: .seconds(15))
        #expect(await waitUntilGone(daemon))
    }

    /// Early signals exit cleanly: SIGTERM during a (slow) migration stops it and exits
    /// promptly with 128 + SIGTERM; the servers never start.
    @Test func sigtermDuringPreparationExitsPromptly() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        let process = try sandbox.start(["FIXTURE_SLEEP_MIGRATE_MS": "60000"])
        defer { process.kill() }
        try await waitForLog(process, containing: "Running migrations...")
        let started = ContinuousClock.now
        process.signal(SIGTERM)
        #expect(try await process.waitForExit(timeout: .seconds(20)) == .exited(128 + SIGTERM))
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(!process.log.contains("Starting backend"))
        #expect(!POSIX.exists(sandbox.migrationLog), "the migration was stopped before it finished")
    }

    /// As PID 1 (in a new PID namespace) signals are handled and orphans reaped.
    @Test(.enabled(if: getuid() == 0, "unshare --pid needs root"))
    func runsAsPID1UnderUnshare() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        let process = try sandbox.start(wrapper: ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"])
        defer { process.kill() }
        let (backend, dashboard) = try await process.waitForServers()
        #expect(backend.ppid == 1 && dashboard.ppid == 1, "the servers' parent is the entrypoint, PID 1 in its namespace")
        // The entrypoint's host pid: the only child of `unshare`.
        let children = String(decoding: try POSIX.readFile("/proc/\(process.child.pid)/task/\(process.child.pid)/children"), as: UTF8.self)
        let entrypoint = try #require(Int32(children.split(separator: " ").first ?? ""))
        kill(entrypoint, SIGTERM)
        #expect(try await process.waitForExit(timeout: .seconds(15)) == .exited(0))
    }

    /// §1.4-3: `STACK_FORWARD_MOCK_OAUTH_SERVER=true` forwards; any other value does not listen.
    @Test func mockOAuthForwarderRunsOnlyWhenEnabled() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        let listen = try HTTPGet.freePort()
        let settings = ["STACK_MOCK_OAUTH_FORWARD_LISTEN": "127.0.0.1:\(listen)",
                        "STACK_MOCK_OAUTH_FORWARD_UPSTREAM": "127.0.0.1:\(sandbox.dashboardPort)"]
        do {
            let process = try sandbox.start(settings.merging(["STACK_FORWARD_MOCK_OAUTH_SERVER": "true"]) { $1 })
            defer { process.kill() }
            _ = try await process.waitForServers()
            let forwarded = try await process.report(port: listen)
            #expect(forwarded.env["PORT"] == String(sandbox.dashboardPort), "the forwarder reached the upstream")
            process.signal(SIGTERM)
            _ = try await process.waitForExit()
        }
        let process = try sandbox.start(settings.merging(["STACK_FORWARD_MOCK_OAUTH_SERVER": "TRUE"]) { $1 })
        defer { process.kill() }
        _ = try await process.waitForServers()
        await #expect(throws: (any Error).self) { _ = try await HTTPGet.get(port: listen, path: "/env", timeout: .seconds(1)) }
    }

    /// Deliberate change 7: `prepare` runs every step before the servers and prints a summary.
    @Test func prepareStopsBeforeTheServersAndPrintsASummary() async throws {
        let sandbox = try await EntrypointSandbox.make()
        defer { sandbox.remove() }
        let (status, log) = try await sandbox.run(["STACK_SKIP_MIGRATIONS": "true", "STACK_SKIP_SEED_SCRIPT": "true"], subcommand: ["prepare"])
        #expect(status == .exited(0))
        let summary = try #require(log.split(separator: "\n").first { $0.hasPrefix("prepared ") })
        #expect(summary.contains("files scanned 7, files changed 3, tokens replaced 4, files copied 7"))
        #expect(summary.contains("elapsed "))
        #expect(!log.contains("Starting backend"))
    }

    private func waitForLog(_ process: EntrypointProcess, containing text: String, deadline: Duration = .seconds(20)) async throws {
        let end = ContinuousClock.now + deadline
        while !process.log.contains(text) {
            if ContinuousClock.now > end { throw StackError(.systemCall, "log never contained \(text):\n\(process.log)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
