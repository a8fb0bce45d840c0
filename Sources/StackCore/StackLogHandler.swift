import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One line per event on stderr, prefixed with the executable's tag:
/// `[stack-entrypoint] Starting backend on port 8102 pid=41`.
///
/// No timestamps (supervisord and journald add their own) and no source location: the
/// lines are for people reading a container log. Metadata values go through
/// `description`, so a `Secret` logged by mistake still prints `<redacted>`.
public struct StackLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let prefix: String
    private let descriptor: Int32

    public init(prefix: String, level: Logger.Level = .info, descriptor: Int32 = 2) {
        self.prefix = prefix
        self.logLevel = level
        self.descriptor = descriptor
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "[\(prefix)] "
        switch event.level {
        case .warning: line += "WARNING: "
        case .error, .critical: line += "ERROR: "
        default: break
        }
        line += event.message.description
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided, uniquingKeysWith: { _, new in new }) }
        if let extra = event.metadata { merged.merge(extra, uniquingKeysWith: { _, new in new }) }
        for key in merged.keys.sorted() {
            line += " \(key)=\(merged[key]!)"
        }
        line += "\n"
        var bytes = Array(line.utf8)
        // One write(2) per line keeps lines whole when several processes share stderr.
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if n <= 0 { if n < 0 && errno == EINTR { continue }; return }
                offset += n
            }
        }
    }
}

public enum StackLogging {
    /// Installs `StackLogHandler` for the whole process. `level` comes from the edge
    /// (flag or `STACK_LOG_LEVEL`), never read here.
    public static func bootstrap(prefix: String, level: Logger.Level = .info) {
        LoggingSystem.bootstrap { _ in StackLogHandler(prefix: prefix, level: level) }
    }

    /// Parses a level name (`trace`…`critical`), for flags and environment variables.
    public static func level(named name: String?) -> Logger.Level? {
        guard let name, !name.isEmpty else { return nil }
        return Logger.Level(rawValue: name.lowercased())
    }
}
