import QEMUControl
import StackCore
import StackProcess
import Synchronization
import TestSupport
import Testing
@testable import HostOrchestrator
#if canImport(Glibc)
import Glibc
#endif

/// Host ports for the demo-guest suites, chosen once per test process: the snapshot's
/// facts include them, so every test bed must use the same ones (the suite is serialized).
enum DemoPorts {
    static let environment: [String: String] = {
        let ports = (try? TestSockets.freePorts(4)) ?? [46700, 46701, 46702, 46703]
        return [
            "PORT_PREFIX": TestSockets.freePrefix(),
            "EMULATOR_DASHBOARD_PORT": "\(ports[0])", "EMULATOR_BACKEND_PORT": "\(ports[1])",
            "EMULATOR_MINIO_PORT": "\(ports[2])", "EMULATOR_INBUCKET_PORT": "\(ports[3])",
        ]
    }()
}

/// One emulator home (IMAGE_DIR + RUN_DIR) whose base image is the demo guest
/// (`stack-emulator-amd64.qcow2/.kernel/.initrd/.cmdline` symlinks), a small base.env,
/// a host share directory, and the suite's ports. `Emulator`s made from it print
/// nothing and collect their lines.
struct EmulatorTestBed: Sendable {
    let directory: String
    let guest: DemoGuest
    let environment: [String: String]

    var images: String { Path.join(directory, "images") }
    var share: String { Path.join(directory, "share") }

    init(directory: String, guest: DemoGuest, overrides: [String: String] = [:]) throws {
        self.directory = directory
        self.guest = guest
        var environment = DemoPorts.environment
        environment.merge([
            "PATH": Command.defaultSearchPath, "HOME": directory,
            "STACK_EMULATOR_HOME": directory,
            "EMULATOR_ACCEL": "tcg",
            "EMULATOR_RAM": "256", "EMULATOR_CPUS": "1", "EMULATOR_SNAPSHOT_RAM": "256", "EMULATOR_SNAPSHOT_CPUS": "1",
            "EMULATOR_HOST_SHARE": Path.join(directory, "share"),
            "EMULATOR_READY_TIMEOUT": "90", "EMULATOR_SNAPSHOT_READY_TIMEOUT": "30", "EMULATOR_STOP_TIMEOUT": "20",
        ]) { $1 }
        environment.merge(overrides) { $1 }
        self.environment = environment

        try POSIX.makeDirectories(Path.join(directory, "images"))
        try POSIX.makeDirectories(Path.join(directory, "share"))
        for (name, target) in [("qcow2", guest.baseImage), ("kernel", guest.kernel), ("initrd", guest.initrd),
                               ("cmdline", Path.join(guest.directory, "cmdline"))] {
            let link = Path.join(images, "stack-emulator-amd64.\(name)")
            if (try? FileSystem.status(link)) == nil { try FileSystem.symbolicLink(target, at: link) }
        }
        try AtomicFile(path: Path.join(images, "base.env")).write(Array("STACK_DEMO_BASE_ENV=1\n".utf8))
    }

    /// A fresh test bed in its own temp directory.
    static func make(_ guest: DemoGuest, overrides: [String: String] = [:]) throws -> EmulatorTestBed {
        let temp = try TestDirectory(prefix: "hp-emu")
        return try EmulatorTestBed(directory: temp.path, guest: guest, overrides: overrides)
    }

    /// The same home with other variables.
    func with(_ overrides: [String: String]) throws -> EmulatorTestBed {
        try EmulatorTestBed(directory: directory, guest: guest, overrides: environment.merging(overrides) { $1 })
    }

    var configuration: EmulatorConfiguration {
        get throws {
            try EmulatorConfiguration(environment: environment, host: HostPlatform(architecture: .amd64, os: .linux, kernelRelease: "test"),
                                      currentDirectory: "/")
        }
    }

    var paths: EmulatorPaths { get throws { try configuration.paths } }

    func emulator(console: EmulatorConsole = .collecting(), observer: (any PhaseObserver)? = nil) throws -> Emulator {
        Emulator(configuration: try configuration, host: HostPlatform(architecture: .amd64, os: .linux, kernelRelease: "test"),
                 console: console, observer: observer)
    }

    var store: SnapshotStore { get throws { SnapshotStore(root: try paths.snapshotStore) } }

    /// Copies a committed snapshot directory into this bed's store as `current`.
    func install(snapshot source: String) async throws -> String {
        let store = try self.store
        try POSIX.makeDirectories(store.root)
        let name = Path.lastComponent(of: source)
        let destination = Path.join(store.root, name)
        try await TestShell.run("cp -a \"$0\" \"$1\" && ln -sfn \"$2\" \"$3\"", environment: nil,
                                timeout: .seconds(60), arguments: [source, destination, name, Path.join(store.root, SnapshotStore.currentLink)])
        return destination
    }

    /// Kills a VM left running (without the stop procedure) and removes the directory.
    /// Synchronous, for `defer`: it waits for nothing.
    func remove() {
        if let paths = try? self.paths, let process = QEMUPidFile(path: paths.pidFile).lookup().process {
            try? process.send(SIGKILL)
        }
        TestDirectory(existing: directory).remove()
    }

    /// A guest-agent session with the running VM (the emulator closed its own).
    func withAgent<T>(_ body: (GuestAgentClient) async throws -> T) async throws -> T {
        let agent = try await GuestAgentClient.connect(path: try paths.agentSocket, deadline: .now + .seconds(10))
        defer { agent.close() }
        try await agent.sync(deadline: .now + .seconds(20))
        return try await body(agent)
    }

    /// `path` in the guest, via `cat`.
    func guestFile(_ path: String) async throws -> String {
        try await withAgent { agent in
            let result = try await agent.exec(path: "/bin/cat", arguments: [path], deadline: .now + .seconds(20))
            try result.requireSuccess("cat \(path)")
            return result.standardOutputText
        }
    }

    func port(_ endpoint: ServiceEndpoint) throws -> UInt16 { endpoint.hostPort(in: try configuration.ports) }
}

extension TestShell {
    /// `sh -c script` with positional arguments ($0, $1, …), so paths need no quoting.
    @discardableResult
    static func run(_ script: String, environment: [String: String]?, timeout: Duration, arguments: [String]) async throws -> String {
        let output = try await Command("/bin/sh", arguments: ["-c", script] + arguments,
                                       environment: environment ?? ["PATH": Command.defaultSearchPath]).run(timeout: timeout)
        guard output.status.isSuccess else {
            throw StackError(.systemCall, "sh -c failed (\(output.status)): \(script)\n\(output.standardErrorText)")
        }
        return output.standardOutputText
    }
}

extension TestDirectory {
    init(existing path: String) {
        self = TestDirectory(unchecked: path)
    }
}

/// A plain HTTP GET of `path` on 127.0.0.1, returning the body (for the served key).
enum HTTPGet {
    static func body(port: UInt16, path: String) async throws -> String {
        let output = try await Command("curl", arguments: ["-sS", "--max-time", "5", "http://127.0.0.1:\(port)\(path)"],
                                       environment: ["PATH": Command.defaultSearchPath]).run(timeout: .seconds(10))
        guard output.status.isSuccess else { throw StackError(.systemCall, "curl \(path): \(output.standardErrorText)") }
        return output.standardOutputText
    }
}

/// The snapshot every demo-guest test resumes, captured once per test process by the
/// real `capture` in `.build/emulator-tests/golden-<pid>` (kept while the process runs:
/// the copies' disk layers use its base-image link as their backing file; directories
/// of test processes that have ended are removed).
actor GoldenSnapshot {
    static let shared = GoldenSnapshot()

    struct Captured: Sendable {
        let bed: EmulatorTestBed
        let snapshot: Snapshot
        let console: [String]
    }

    private var captured: Captured?

    func get() async throws -> Captured {
        if let captured { return captured }
        let guest = try await DemoGuest.ensureBuilt()
        // (DemoGuest.repositoryRoot() takes #filePath at the call site: derive it from its default directory.)
        let parent = Path.join(Path.directory(of: DemoGuest.defaultDirectory), ".build/emulator-tests")
        for name in try FileSystem.contents(of: parent) where name.hasPrefix("golden-") {
            if let pid = pid_t(name.dropFirst("golden-".count)), pid == getpid() || kill(pid, 0) != 0 {
                TestDirectory(existing: Path.join(parent, name)).remove()
            }
        }
        let directory = Path.join(parent, "golden-\(getpid())")
        try POSIX.makeDirectories(directory)
        let bed = try EmulatorTestBed(directory: directory, guest: guest)
        let console = EmulatorConsole.collecting()
        let report = try await bed.emulator(console: console).capture()
        guard case .captured(let snapshot, _, _) = report else {
            throw StackError(.systemCall, "the golden capture did not capture: \(report)")
        }
        let result = Captured(bed: bed, snapshot: snapshot, console: console.lines.map(\.text))
        captured = result
        return result
    }
}

/// Records internal-pck as it is when each phase starts (§4.19-20 checks `.trigger`).
final class InternalPCKWitness: PhaseObserver {
    struct Seen: Sendable, Equatable {
        var bytes: [UInt8]
        var mode: mode_t
    }

    private struct State {
        var seen: [Phase: Seen?] = [:]
        var started: [Phase] = []
    }

    private let state = Mutex(State())
    let path: String

    init(path: String) { self.path = path }

    func phaseStarted(_ phase: Phase) {
        var status = stat()
        let now: Seen? = stat(path, &status) == 0 ? Seen(bytes: (try? POSIX.readFile(path)) ?? [], mode: status.st_mode & 0o777) : nil
        state.withLock {
            $0.seen[phase] = .some(now)
            $0.started.append(phase)
        }
    }

    func phaseEnded(_ phase: Phase, after duration: Duration) {}

    /// nil: the phase never started; .some(nil): internal-pck did not exist then.
    func atStart(of phase: Phase) -> Seen?? {
        state.withLock { $0.seen[phase] }
    }

    var phases: [Phase] { state.withLock { $0.started } }
}
