/// supervisord's state of one program process (`supervisor.process.ProcessStates`).
public struct ProcessState: Hashable, Sendable, CustomStringConvertible {
    public let code: Int
    public init(code: Int) { self.code = code }

    public static let stopped = ProcessState(code: 0)
    public static let starting = ProcessState(code: 10)
    public static let running = ProcessState(code: 20)
    public static let backoff = ProcessState(code: 30)
    public static let stopping = ProcessState(code: 40)
    public static let exited = ProcessState(code: 100)
    public static let fatal = ProcessState(code: 200)
    public static let unknown = ProcessState(code: 1000)

    /// supervisord's name for the state (`RUNNING`, `BACKOFF`, …).
    public var name: String {
        switch self {
        case .stopped: "STOPPED"
        case .starting: "STARTING"
        case .running: "RUNNING"
        case .backoff: "BACKOFF"
        case .stopping: "STOPPING"
        case .exited: "EXITED"
        case .fatal: "FATAL"
        case .unknown: "UNKNOWN"
        default: "STATE_\(code)"
        }
    }

    public var description: String { name }
}

/// One entry of `supervisor.getProcessInfo` / `getAllProcessInfo`.
public struct SupervisedProcess: Sendable, Equatable, CustomStringConvertible {
    /// The process name (for a single-process program: the program name).
    public let name: String
    /// The group name (for a plain `[program:x]`: `x`).
    public let group: String
    public let state: ProcessState
    /// The pid while the process exists (RUNNING, STARTING, STOPPING), else nil.
    public let pid: Int32?
    /// When the process was last started, in seconds since the epoch (0: never).
    public let startTime: Int
    /// When the process last stopped, in seconds since the epoch (0: never).
    public let stopTime: Int
    /// Exit status of the last run (meaningful in EXITED / BACKOFF / FATAL).
    public let exitStatus: Int
    /// supervisord's reason for a failed spawn ("Exited too quickly …"), or empty.
    public let spawnError: String
    /// supervisorctl's status text ("pid 42, uptime 0:00:03").
    public let statusDescription: String
    public let standardErrorLogfile: String

    /// The name supervisord's methods accept unambiguously: `group:name`.
    public var qualifiedName: String { "\(group):\(name)" }

    public init(name: String, group: String, state: ProcessState, pid: Int32?, startTime: Int, stopTime: Int,
                exitStatus: Int, spawnError: String, statusDescription: String, standardErrorLogfile: String) {
        self.name = name
        self.group = group
        self.state = state
        self.pid = pid
        self.startTime = startTime
        self.stopTime = stopTime
        self.exitStatus = exitStatus
        self.spawnError = spawnError
        self.statusDescription = statusDescription
        self.standardErrorLogfile = standardErrorLogfile
    }

    /// Decodes the struct supervisord returns.
    init(_ value: XMLRPCValue) throws {
        guard case .structure(let members) = value else {
            throw SupervisordError(.invalidResponse, "process info from supervisord is \(value.typeName), expected struct")
        }
        func string(_ key: String) throws -> String {
            guard case .string(let text)? = members[key] else { throw missing(key, "string") }
            return text
        }
        func int(_ key: String) throws -> Int {
            guard case .int(let number)? = members[key] else { throw missing(key, "int") }
            return number
        }
        func missing(_ key: String, _ type: String) -> SupervisordError {
            SupervisordError(.invalidResponse, "process info from supervisord lacks \(type) member \"\(key)\": \(value)")
        }
        let pid = try int("pid")
        self.init(
            name: try string("name"),
            group: try string("group"),
            state: ProcessState(code: try int("state")),
            pid: pid > 0 ? Int32(clamping: pid) : nil,
            startTime: try int("start"),
            stopTime: try int("stop"),
            exitStatus: try int("exitstatus"),
            spawnError: try string("spawnerr"),
            statusDescription: try string("description"),
            standardErrorLogfile: (try? string("stderr_logfile")) ?? "")
    }

    public var description: String {
        "\(qualifiedName) \(state)" + (pid.map { " pid \($0)" } ?? "") + (spawnError.isEmpty ? "" : " (\(spawnError))")
    }
}

/// supervisord's own state (`supervisor.getState`).
public struct SupervisorState: Hashable, Sendable, CustomStringConvertible {
    /// 2 FATAL, 1 RUNNING, 0 RESTARTING, -1 SHUTDOWN.
    public let code: Int
    public let name: String

    public var isRunning: Bool { code == 1 }
    public var description: String { name }
}
