import ArgumentParser
import HostOrchestrator
import Logging
import StackCore
import StackProcess
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct EmulatorMain {
    static func main() async {
        switch ActionWords.parse(Array(CommandLine.arguments.dropFirst())) {
        case .usageError(let word):
            EmulatorConsole.standard().error("Unknown action '\(word)'. \(ActionWords.usage)")
            exit(1)
        case .arguments(let arguments):
            var command: any ParsableCommand
            do {
                command = try EmulatorCommand.parseAsRoot(arguments)
            } catch {
                // --help is an "error" with exit code 0; anything the parser rejects is a
                // usage error, which exits 1 like the shell (not ArgumentParser's 64).
                let text = EmulatorCommand.fullMessage(for: error)
                if EmulatorCommand.exitCode(for: error) == .success {
                    print(text)
                    exit(0)
                }
                EmulatorConsole.standard().error(text)
                EmulatorConsole.standard().error(ActionWords.usage)
                exit(1)
            }
            // Before anything can start a thread: logging, then the signals (see SignalSource).
            StackLogging.bootstrap(prefix: "stack-emulator",
                                   level: StackLogging.level(named: ProcessEnvironment.current["STACK_EMULATOR_LOG_LEVEL"]) ?? .warning)
            if case .failure(let error) = Interrupts.source {
                EmulatorConsole.standard().error("cannot set up signal handling: \(error)")
                exit(1)
            }
            do {
                if var asyncCommand = command as? AsyncParsableCommand {
                    try await asyncCommand.run()
                } else {
                    try command.run()
                }
                exit(0)
            } catch let code as ExitCode {
                exit(code.rawValue)
            } catch {
                EmulatorConsole.standard().error("\(error)")
                exit(1)
            }
        }
    }
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT, taken over once for the whole process: each
/// cancels the running action (`Invocation.run`), which then stops what it launched,
/// instead of killing the process with QEMU left behind.
enum Interrupts {
    /// Installed by its first use, which `main` makes before anything else runs.
    static let source: Result<SignalSource, any Error> = Result {
        try SignalSource.install(SignalSource.Configuration(signals: Signal.shutdownRequests, shutdownSignals: Signal.shutdownRequests),
                                 logger: Logger(label: "stack-emulator"))
    }

    /// The one line an interrupted action ends with.
    static func message(_ signal: Signal, action: String, result: Result<Int32, any Error>) -> String {
        switch result {
        case .failure(let error as HostError) where error.code == .interrupted:
            return "Interrupted by \(signal): \(error.message)."
        case .failure(is CancellationError):
            return "Interrupted by \(signal) before \(action) had finished."
        case .failure(let error):
            return "Interrupted by \(signal); \(action) ended with: \(error)"
        case .success:
            return "Interrupted by \(signal) after \(action) had finished; its result stands."
        }
    }
}

struct EmulatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stack-emulator",
        abstract: "Runs the Stack Auth local emulator VM (QEMU): start, stop, status, reset, capture, bench.",
        discussion: """
        Configured by environment variables (EMULATOR_IMAGE_DIR, EMULATOR_RUN_DIR or STACK_EMULATOR_HOME, \
        EMULATOR_*_PORT, PORT_PREFIX, EMULATOR_NO_SNAPSHOT, EMULATOR_NO_ROTATION, …; see the README).
        """,
        subcommands: [Start.self, Stop.self, Status.self, Reset.self, Capture.self, Bench.self],
        defaultSubcommand: Start.self)
}

/// The edge: the process environment, the host and the current directory, read once.
struct Invocation {
    static func emulator(console: EmulatorConsole = .standard()) throws -> Emulator {
        let environment = ProcessEnvironment.current
        let host = try HostPlatform.detect()
        let configuration = try EmulatorConfiguration(environment: environment, host: host, currentDirectory: currentDirectory())
        return Emulator(configuration: configuration, host: host, console: console)
    }

    static func currentDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return "/" }
        return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Runs `body` for `action`; a failure is one `[emulator]` error line on stderr and
    /// exit 1. A shutdown signal cancels `body` and waits for it (it stops what it
    /// launched), then one line says what happened and the exit code is 128 + signal.
    static func run(_ action: String, console: EmulatorConsole = .standard(),
                    _ body: @escaping @Sendable (Emulator) async throws -> Int32) async throws {
        let signals = try Interrupts.source.get()
        switch await signals.runUntilShutdown({ try await body(try emulator(console: console)) }) {
        case .completed(.success(let code)):
            if code != 0 { throw ExitCode(code) }
        case .completed(.failure(let error)):
            console.error("\(error)")
            throw ExitCode(1)
        case .interrupted(let signal, let result):
            console.finishProgress()
            console.error(Interrupts.message(signal, action: action, result: result))
            throw ExitCode(128 + signal.rawValue)
        }
    }
}

struct Start: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start the VM: resume the snapshot (with fresh secrets) if usable, else cold boot. The default action.")

    func run() async throws {
        try await Invocation.run("start") { emulator in
            _ = try await emulator.start()
            return 0
        }
    }
}

struct Stop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Power the guest off (ACPI), then terminate QEMU if it does not exit in time.")

    func run() async throws {
        try await Invocation.run("stop") { emulator in
            try await emulator.stop()
            return 0
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the VM and the four services; exit 0 only when all are up.")

    func run() async throws {
        try await Invocation.run("status") { emulator in
            await emulator.status().allUp ? 0 : 1
        }
    }
}

struct Reset: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop, then delete the run directory (images and snapshots stay).")

    func run() async throws {
        try await Invocation.run("reset") { emulator in
            try await emulator.reset()
            return 0
        }
    }
}

struct Capture: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Cold-boot in the snapshot layout and capture a RAM snapshot (EMULATOR_FORCE_CAPTURE=1 replaces an existing one).")

    func run() async throws {
        try await Invocation.run("capture") { emulator in
            _ = try await emulator.capture()
            return 0
        }
    }
}

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop, then start and print the startup time of each phase.")

    @Flag(help: "Print the timings as JSON on stdout (progress lines go to stderr).")
    var json = false

    func run() async throws {
        let console = json ? EmulatorConsole(output: .descriptor(2), errors: .descriptor(2)) : EmulatorConsole.standard()
        try await Invocation.run("bench", console: console) { [json] emulator in
            let report = try await emulator.bench()
            if json {
                try POSIX.writeAll(1, Array((try BenchOutput(report).json() + "\n").utf8), context: "write to stdout")
            } else {
                for line in BenchOutput(report).lines() { console.log(line) }
            }
            return 0
        }
    }
}
