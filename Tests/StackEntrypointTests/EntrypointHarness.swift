import Foundation
import StackCore
import StackProcess
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A copy of the fixture app (`Tests/Fixtures/app`) plus a work directory, free ports
/// and an environment, to run the real `stack-entrypoint` binary against.
struct EntrypointSandbox {
    let directory: TemporaryDirectory
    let backendPort: UInt16
    let dashboardPort: UInt16
    var environment: [String: String]
    var appDirectory: String { directory.file("app") }
    var workDirectory: String
    var overlayPath: String { directory.file("rotated-secrets.env") }
    var migrationLog: String { directory.file("migrations.log") }

    static func make(inPlace: Bool = false) async throws -> EntrypointSandbox {
        let directory = try TemporaryDirectory(prefix: "ep")
        try await TestShell.run("cp -a '\(BuiltProducts.fixtures)/app' '\(directory.path)/app'")
        let backend = try HTTPGet.freePort()
        var dashboard = try HTTPGet.freePort()
        while dashboard == backend { dashboard = try HTTPGet.freePort() }
        let environment = [
            "PATH": ProcessEnvironment.current["PATH"] ?? Command.defaultSearchPath,
            "HOME": directory.path,
            "BACKEND_PORT": String(backend),
            "DASHBOARD_PORT": String(dashboard),
            "FIXTURE_MIGRATION_LOG": directory.file("migrations.log"),
        ]
        return EntrypointSandbox(directory: directory, backendPort: backend, dashboardPort: dashboard,
                                 environment: environment,
                                 workDirectory: inPlace ? directory.file("app") : directory.file("work"))
    }

    func remove() { directory.remove() }

    var arguments: [String] {
        ["--app-dir", appDirectory, "--work-dir", workDirectory, "--rotated-secrets", overlayPath, "--grace-period", "3",
         "--database-wait", "2"]
    }

    /// Starts `stack-entrypoint` (optionally through `wrapper`, e.g. `unshare …`).
    func start(_ extra: [String: String] = [:], subcommand: [String] = [], wrapper: [String] = []) throws -> EntrypointProcess {
        let log = directory.file("entrypoint-\(UInt32.random(in: 0...UInt32.max)).log")
        let fd = try POSIX.open(log, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        defer { POSIX.close(fd) }
        let binary = BuiltProducts.path(of: "stack-entrypoint")
        let argv = wrapper + [binary] + subcommand + arguments
        let command = Command(argv[0], arguments: Array(argv.dropFirst()),
                              environment: environment.merging(extra) { _, new in new },
                              processGroup: .new, standardInput: .discard,
                              standardOutput: .fileDescriptor(fd), standardError: .fileDescriptor(fd))
        let child = try command.spawn()
        return EntrypointProcess(child: child, tether: TestLifeline.tether(processGroup: child.pid), logPath: log, sandbox: self)
    }

    /// Runs to completion (e.g. a start that must fail, or `prepare`).
    func run(_ extra: [String: String] = [:], subcommand: [String] = [], timeout: Duration = .seconds(60)) async throws -> (StackProcess.ExitStatus, String) {
        let process = try start(extra, subcommand: subcommand)
        let status = try await process.waitForExit(timeout: timeout)
        return (status, process.log)
    }
}

/// A running `stack-entrypoint`.
struct EntrypointProcess {
    let child: ChildProcess
    let tether: TestLifeline.Tether
    let logPath: String
    let sandbox: EntrypointSandbox

    var log: String { (try? POSIX.readFile(logPath)).map { String(decoding: $0, as: UTF8.self) } ?? "" }

    /// What a fixture server reports at `GET /env`.
    struct ServerReport {
        let pid: Int32
        let ppid: Int32
        let cwd: String
        let env: [String: String]
        let bundle: String?
    }

    /// Waits until both servers answer, then returns their reports.
    func waitForServers(deadline: Duration = .seconds(30)) async throws -> (backend: ServerReport, dashboard: ServerReport) {
        async let backend = report(port: sandbox.backendPort, deadline: deadline)
        async let dashboard = report(port: sandbox.dashboardPort, deadline: deadline)
        do {
            return try await (backend, dashboard)
        } catch {
            throw StackError(.systemCall, "servers did not come up: \(error)\n--- entrypoint log\n\(log)")
        }
    }

    func report(port: UInt16, deadline: Duration = .seconds(30)) async throws -> ServerReport {
        let response = try await HTTPGet.waitFor(port: port, path: "/env", deadline: deadline)
        let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] ?? [:]
        return ServerReport(pid: (object["pid"] as? NSNumber)?.int32Value ?? 0,
                            ppid: (object["ppid"] as? NSNumber)?.int32Value ?? 0,
                            cwd: object["cwd"] as? String ?? "",
                            env: object["env"] as? [String: String] ?? [:],
                            bundle: object["bundle"] as? String)
    }

    func signal(_ signal: Int32) { child.send(signal) }

    /// Waits for the entrypoint to exit; kills its group after `timeout` and throws.
    func waitForExit(timeout: Duration = .seconds(30)) async throws -> StackProcess.ExitStatus {
        let child = self.child
        let status: StackProcess.ExitStatus? = try await withThrowingTaskGroup(of: StackProcess.ExitStatus?.self) { group in
            group.addTask { try await child.waitForExit() }
            group.addTask { try? await Task.sleep(for: timeout); return nil }
            let first = try await group.next()!
            if first == nil {
                child.sendToGroup(SIGKILL)
                _ = try await group.next()
            }
            group.cancelAll()
            return first
        }
        tether.release()
        guard let status else {
            throw StackError(.systemCall, "stack-entrypoint did not exit within \(timeout)\n--- log\n\(log)")
        }
        return status
    }

    /// SIGKILL to the whole group (teardown after a failed expectation).
    func kill() {
        child.sendToGroup(SIGKILL)
        _ = try? child.exitStatusIfEnded()
        tether.release()
    }
}

/// `true` while a process with that pid exists and is not a zombie.
func isAlive(_ pid: Int32) -> Bool {
    guard let stat = try? POSIX.readFile("/proc/\(pid)/stat") else { return false }
    let text = String(decoding: stat, as: UTF8.self)
    guard let close = text.lastIndex(of: ")") else { return false }
    let state = text[text.index(close, offsetBy: 2)]
    return state != "Z" && state != "X"
}

/// Waits (polling from 5 ms) until `pid` is gone or `deadline` passes.
func waitUntilGone(_ pid: Int32, deadline: Duration = .seconds(10)) async -> Bool {
    let end = ContinuousClock.now + deadline
    var delay = Duration.milliseconds(5)
    while ContinuousClock.now < end {
        if !isAlive(pid) { return true }
        try? await Task.sleep(for: delay)
        delay = min(delay * 2, .milliseconds(100))
    }
    return !isAlive(pid)
}
