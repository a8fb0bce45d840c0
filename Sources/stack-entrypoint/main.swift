// Top-level code rather than `@main`: the signal mask must be set on the main thread
// before any other thread exists (every thread inherits it), and as PID 1 the kernel
// only delivers signals that have a handler. Parsing and logging start no threads.
import Logging
import StackCore
import StackEntrypoint
import StackProcess
#if canImport(Glibc)
import Glibc
#endif

let parsed: ParsableCommandBox
do {
    parsed = ParsableCommandBox(try EntrypointCommand.parseAsRoot())
} catch {
    EntrypointCommand.exit(withError: error)
}

let environment = ProcessEnvironment.current
let options = parsed.options
StackLogging.bootstrap(prefix: "stack-entrypoint",
                       level: StackLogging.level(named: options.logLevel ?? environment["STACK_LOG_LEVEL"]) ?? .info)
let logger = Logger(label: "stack-entrypoint")

let signals: SignalSource
let reaper: Reaper
do {
    signals = try SignalSource.install(logger: logger)
    reaper = try Reaper(signals: signals, logger: logger)
} catch {
    logger.error("cannot set up signal handling: \(error)")
    exit(1)
}

let configuration: EntrypointConfiguration
do {
    let grace = options.gracePeriod ?? environment["STACK_SHUTDOWN_GRACE_SECONDS"].flatMap(Double.init) ?? 8
    configuration = EntrypointConfiguration(
        environment: environment,
        appDirectory: options.appDir,
        workDirectory: options.workDir,
        rotatedSecretsPath: options.rotatedSecrets,
        gracePeriod: .milliseconds(Int64(grace * 1000)),
        forwarder: try EntrypointConfiguration.forwarder(from: environment),
        databaseConnectDeadline: .milliseconds(Int64(options.databaseWait * 1000)))
} catch {
    logger.error("\(error)")
    exit(1)
}

let entrypoint = Entrypoint(configuration: configuration, signals: signals, reaper: reaper, logger: logger)
if parsed.isPrepare {
    do {
        let preparation = try await signals.cancellingOnShutdown { try await entrypoint.prepare() }
        print("prepared \(configuration.workDirectory): \(preparation.summary)")
        exit(0)
    } catch {
        logger.error("\(error)")
        exit(1)
    }
}
exit(await entrypoint.run())
