#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CSystem
import Logging
import Synchronization

/// A qemu-guest-agent (QGA) connection: the host side of the guest's virtio-serial port
/// (QEMU's chardev socket), or `qemu-ga -m unix-listen` directly.
///
/// The stream may hold anything when we arrive — replies to a previous client, output
/// queued before a snapshot, half a request in the agent's parser — so before the first
/// command, and after any timeout, the client synchronises: it sends 0xFF (which resets
/// the agent's parser) and `guest-sync-delimited` with a random id, and skips everything
/// until a reply that follows the agent's 0xFF marker and echoes one of its ids. Every
/// other command carries a unique `id` (random base, so a stale reply from an earlier
/// client cannot match) and only the reply with that `id` is accepted.
public final class GuestAgentClient: Sendable {
    public struct Configuration: Sendable {
        /// Deadline for a call that is given none.
        public var defaultTimeout: Duration
        /// First wait for a sync reply before re-sending with a new id (doubles, capped by
        /// `syncAttemptMaximum`); a late reply to an earlier attempt is still accepted.
        public var syncAttemptInitial: Duration
        public var syncAttemptMaximum: Duration
        /// Interval between `guest-exec-status` polls: starts here, doubles, capped.
        public var execPollInitial: Duration
        public var execPollMaximum: Duration
        /// Largest accepted message (captured output is up to 16 MiB, base64 ~22 MiB).
        public var maximumMessageSize: Int
        public var logger: Logger

        public init(defaultTimeout: Duration = .seconds(30),
                    syncAttemptInitial: Duration = .milliseconds(10), syncAttemptMaximum: Duration = .seconds(1),
                    execPollInitial: Duration = .milliseconds(10), execPollMaximum: Duration = .milliseconds(100),
                    maximumMessageSize: Int = 64 << 20, logger: Logger = Logger(label: "QEMUControl.QGA")) {
            self.defaultTimeout = defaultTimeout
            self.syncAttemptInitial = syncAttemptInitial
            self.syncAttemptMaximum = syncAttemptMaximum
            self.execPollInitial = execPollInitial
            self.execPollMaximum = execPollMaximum
            self.maximumMessageSize = maximumMessageSize
            self.logger = logger
        }
    }

    private struct State {
        var needsSync = true
        var lastID: Int64
    }

    public let path: String
    let configuration: Configuration
    private let channel: MessageChannel<GuestAgentMessage>
    private let state: Mutex<State>
    private var label: String { channel.configuration.label }

    /// Opens the socket (retrying while it does not exist yet). Does not wait for the
    /// agent: the first command (or an explicit `sync`) does.
    public static func connect(path: String, configuration: Configuration = Configuration(),
                               deadline: ContinuousClock.Instant? = nil) async throws -> GuestAgentClient {
        let fd = try await UnixSocket.connect(path: path, deadline: deadline ?? .now + configuration.defaultTimeout)
        let label = "guest agent \(path)"
        let logger = configuration.logger
        let channel = try MessageChannel<GuestAgentMessage>(
            socket: fd,
            configuration: .init(label: label, maximumMessageSize: configuration.maximumMessageSize,
                                 recognizesDelimiter: true, backlogLimit: 0, logger: logger),
            decode: GuestAgentMessage.makeDecoder(),
            retainUnclaimed: { message in
                // Stale output (earlier clients, abandoned calls, the stray-byte parse error).
                let reply = message.reply
                logger.debug("\(label): skipping \(reply.error.map { "error \($0.class): \($0.desc)" } ?? ProtocolReply.excerpt(reply.value ?? .null, limit: 120))")
                return false
            })
        return GuestAgentClient(path: path, configuration: configuration, channel: channel)
    }

    private init(path: String, configuration: Configuration, channel: MessageChannel<GuestAgentMessage>) {
        self.path = path
        self.configuration = configuration
        self.channel = channel
        // Far from small counters other clients may have used, and below 2^53 so any
        // JSON implementation keeps it exact.
        state = Mutex(State(lastID: GuestAgentClient.randomID()))
    }

    deinit {
        channel.close()
    }

    public func close() {
        channel.close()
    }

    // MARK: synchronisation

    /// Waits until the agent answers a `guest-sync-delimited` (see the type's comment),
    /// re-sending with a new id after each attempt timeout, until `deadline`. Doubles as
    /// "wait for the guest agent" after a boot or resume.
    public func sync(deadline: ContinuousClock.Instant? = nil) async throws {
        let deadline = deadline ?? .now + configuration.defaultTimeout
        let started = ContinuousClock.now
        var sent: [Int64] = []
        var attemptTimeout = configuration.syncAttemptInitial
        while true {
            let id = GuestAgentClient.randomID()
            sent.append(id)
            let accepted = sent
            let attemptDeadline = min(.now + attemptTimeout, deadline)
            let slot = try channel.register(purpose: "guest-sync-delimited reply", deadline: attemptDeadline) { message in
                GuestAgentClient.isSyncReply(message, toAnyOf: accepted)
            }
            do {
                struct Arguments: Encodable, Sendable { let id: Int64 }
                let line = try QMPRequest(execute: "guest-sync-delimited", arguments: Arguments(id: id), id: nil)
                    .encodedLine(prefix: [LineFramer.delimiterByte])
                try channel.send(line)
            } catch {
                channel.abandon(slot)
                throw error
            }
            do {
                _ = try await channel.wait(slot)
                state.withLock { $0.needsSync = false }
                configuration.logger.debug("\(label): in sync after \(sent.count) attempt(s), \(started.duration(to: .now))")
                return
            } catch let error as QEMUControlError where error.code == .timedOut {
                if ContinuousClock.now >= deadline {
                    throw QEMUControlError(.timedOut,
                        "\(label): the guest agent did not answer guest-sync-delimited within \(started.duration(to: .now)) (\(sent.count) attempts); is qemu-guest-agent running in the guest?",
                        command: "guest-sync-delimited")
                }
                attemptTimeout = min(attemptTimeout * 2, configuration.syncAttemptMaximum)
            }
        }
    }

    /// The answer to one of our sync requests: right after the agent's 0xFF marker, with
    /// no `id`, returning one of the random ids we sent.
    static func isSyncReply(_ message: GuestAgentMessage, toAnyOf ids: [Int64]) -> Bool {
        guard case .reply(_, let followsDelimiter, let value?) = message else { return false }
        return followsDelimiter && ids.contains(value)
    }

    /// Messages skipped as stale since the connection opened.
    var skippedCount: Int { channel.unclaimedCount }

    // MARK: commands

    /// Runs `command` with `arguments` and decodes its `return` as `R`. Syncs first when
    /// needed; a timeout marks the stream for a resync before the next command.
    public func execute<A: Encodable & Sendable, R: Decodable>(
        _ command: String, arguments: A, returning: R.Type, deadline: ContinuousClock.Instant? = nil
    ) async throws -> R {
        let reply = try await perform(command, arguments: arguments, deadline: deadline)
        return try reply.decodeReturn(R.self, command: command, peer: label)
    }

    public func execute<R: Decodable>(_ command: String, returning: R.Type,
                                      deadline: ContinuousClock.Instant? = nil) async throws -> R {
        let reply = try await perform(command, arguments: NoArguments?.none, deadline: deadline)
        return try reply.decodeReturn(R.self, command: command, peer: label)
    }

    /// Runs `command` and returns its `return` as a `JSONValue`.
    @discardableResult
    public func execute(_ command: String, arguments: JSONValue? = nil,
                        deadline: ContinuousClock.Instant? = nil) async throws -> JSONValue {
        let reply = try await perform(command, arguments: arguments, deadline: deadline)
        return try reply.decodeReturn(JSONValue.self, command: command, peer: label)
    }

    private func perform<A: Encodable & Sendable>(_ command: String, arguments: A?,
                                                  deadline: ContinuousClock.Instant?) async throws -> ProtocolReply {
        let deadline = deadline ?? .now + configuration.defaultTimeout
        if state.withLock({ $0.needsSync }) {
            try await sync(deadline: deadline)
        }
        let id = JSONValue.int(state.withLock { s in
            s.lastID += 1
            return s.lastID
        })
        let line = try QMPRequest(execute: command, arguments: arguments, id: id).encodedLine()
        let slot = try channel.register(purpose: "reply to \(command)", deadline: deadline) { $0.isReply(to: id) }
        do {
            try channel.send(line)
        } catch {
            channel.abandon(slot)
            throw error
        }
        let reply: ProtocolReply
        do {
            reply = try await channel.wait(slot).reply
        } catch let error as QEMUControlError where error.code == .timedOut {
            // The agent may be stuck or the guest paused; its late answer must not be
            // read as the answer to anything else.
            state.withLock { $0.needsSync = true }
            throw QEMUControlError(.timedOut, "\(label): no reply to \(command) before the deadline; the next command resynchronises first",
                                   command: command)
        }
        try reply.check(command: command, peer: label)
        return reply
    }

    public func ping(deadline: ContinuousClock.Instant? = nil) async throws {
        _ = try await perform("guest-ping", arguments: NoArguments?.none, deadline: deadline)
    }

    public func info(deadline: ContinuousClock.Instant? = nil) async throws -> GuestAgentInfo {
        try await execute("guest-info", returning: GuestAgentInfo.self, deadline: deadline)
    }

    /// Sets the guest clock to `nanosecondsSinceEpoch`, or — when nil — from the guest's
    /// RTC (the agent runs `hwclock -s`). Fixes the stale clock after a resume.
    public func setTime(nanosecondsSinceEpoch: Int64?, deadline: ContinuousClock.Instant? = nil) async throws {
        _ = try await perform("guest-set-time", arguments: GuestAgentClient.setTimeArguments(nanosecondsSinceEpoch), deadline: deadline)
    }

    struct SetTimeArguments: Encodable, Sendable { let time: Int64 }

    static func setTimeArguments(_ nanoseconds: Int64?) -> SetTimeArguments? {
        nanoseconds.map(SetTimeArguments.init(time:))
    }

    // MARK: guest processes

    struct ExecArguments: Encodable, Sendable {
        let path: String
        let arg: [String]?
        let env: [String]?
        let inputData: String?
        let captureOutput: Bool

        enum CodingKeys: String, CodingKey {
            case path, arg, env
            case inputData = "input-data"
            case captureOutput = "capture-output"
        }

        /// `input` travels base64-encoded inside the request — the only channel for
        /// secrets (never `arguments` or `environment`, which are visible in the guest).
        init(path: String, arguments: [String], environment: [String: String]?, input: [UInt8]?, captureOutput: Bool) {
            self.path = path
            self.arg = arguments.isEmpty ? nil : arguments
            self.env = environment.map { variables in variables.keys.sorted().map { "\($0)=\(variables[$0]!)" } }
            self.inputData = input.map { Data($0).base64EncodedString() }
            self.captureOutput = captureOutput
        }
    }

    /// Starts `path` in the guest and returns its pid. `environment`, when given, is the
    /// process's complete environment. `input` is written to its stdin.
    public func startExec(path: String, arguments: [String] = [], environment: [String: String]? = nil,
                          input: [UInt8]? = nil, captureOutput: Bool = true,
                          deadline: ContinuousClock.Instant? = nil) async throws -> Int64 {
        struct Started: Decodable { let pid: Int64 }
        let request = ExecArguments(path: path, arguments: arguments, environment: environment, input: input, captureOutput: captureOutput)
        return try await execute("guest-exec", arguments: request, returning: Started.self, deadline: deadline).pid
    }

    /// One status report. The agent forgets a process once it has reported it exited,
    /// so a status call that timed out may have consumed the exit status for good.
    public func execStatus(pid: Int64, deadline: ContinuousClock.Instant? = nil) async throws -> GuestExecStatus {
        struct Arguments: Encodable, Sendable { let pid: Int64 }
        return try await execute("guest-exec-status", arguments: Arguments(pid: pid), returning: GuestExecStatus.self, deadline: deadline)
    }

    /// Polls `guest-exec-status` (the agent has no exit notification) at intervals from
    /// `execPollInitial`, doubling up to `execPollMaximum`, until the process exited.
    public func waitForExit(pid: Int64, deadline: ContinuousClock.Instant? = nil) async throws -> GuestExecResult {
        let deadline = deadline ?? .now + configuration.defaultTimeout
        let started = ContinuousClock.now
        var interval = configuration.execPollInitial
        while true {
            let status = try await execStatus(pid: pid, deadline: deadline)
            if status.exited { return GuestExecResult(pid: pid, status: status) }
            let now = ContinuousClock.now
            if now >= deadline {
                throw QEMUControlError(.timedOut,
                    "\(label): guest process \(pid) was still running after \(started.duration(to: now))",
                    command: "guest-exec-status")
            }
            try await Task.sleep(until: min(now + interval, deadline), clock: .continuous)
            interval = min(interval * 2, configuration.execPollMaximum)
        }
    }

    /// Runs `path` in the guest to completion: `startExec` then `waitForExit`, both
    /// within `deadline`. A non-zero exit or a signal is reported in the result, not thrown.
    public func exec(path: String, arguments: [String] = [], environment: [String: String]? = nil,
                     input: [UInt8]? = nil, captureOutput: Bool = true,
                     deadline: ContinuousClock.Instant? = nil) async throws -> GuestExecResult {
        let deadline = deadline ?? .now + configuration.defaultTimeout
        let pid = try await startExec(path: path, arguments: arguments, environment: environment, input: input,
                                      captureOutput: captureOutput, deadline: deadline)
        return try await waitForExit(pid: pid, deadline: deadline)
    }

    // MARK: test hooks

    /// Writes raw bytes to the agent (tests inject junk and half requests with it).
    func sendRaw(_ bytes: [UInt8]) throws {
        try channel.send(bytes)
    }

    /// Positive random id for sync requests.
    private static func randomID() -> Int64 {
        var value: Int64 = 0
        let rc = withUnsafeMutableBytes(of: &value) { cs_getrandom($0.baseAddress, $0.count) }
        precondition(rc == 0, "getrandom failed")
        return (value & ((1 << 52) - 1)) | 1
    }
}
