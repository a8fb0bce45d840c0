import Logging
import Synchronization

/// Collects log events in memory so tests can assert on what was logged.
final class LogRecorder: Sendable {
    struct Entry: Sendable {
        let level: Logger.Level
        let message: String
        let metadata: [String: String]

        /// Message and metadata as one text, for "never contains" checks.
        var fullText: String {
            ([message] + metadata.keys.sorted().map { "\($0)=\(metadata[$0]!)" }).joined(separator: " ")
        }
    }

    private let storage = Mutex<[Entry]>([])

    var entries: [Entry] { storage.withLock { $0 } }

    func record(_ entry: Entry) { storage.withLock { $0.append(entry) } }

    func logger(level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: "stack-postgres-tests") { _ in CapturingLogHandler(recorder: self) }
        logger.logLevel = level
        return logger
    }
}

struct CapturingLogHandler: LogHandler {
    let recorder: LogRecorder
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        recorder.record(.init(level: event.level, message: event.message.description,
                              metadata: merged.mapValues { "\($0)" }))
    }
}

/// For tests that do not look at logs: keeps the test output clean.
let quietLogger = Logger(label: "stack-postgres-tests") { _ in SwiftLogNoOpLogHandler() }
