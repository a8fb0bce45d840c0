import Synchronization

/// A named step of `start` or `capture`, timed by `PhaseTimings` and reported by
/// `bench` (§4.15, with sub-second precision, §5.4 #46).
public struct Phase: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public var description: String { rawValue }

    /// Lock, pid and port checks, accelerator, QEMU version, snapshot lookup.
    public static let preflight: Phase = "preflight"
    /// Overlay, phantom drives, STACKCFG disk.
    public static let prepare: Phase = "prepare"
    /// QEMU started (daemonized) and its QMP socket answering.
    public static let launch: Phase = "launch"
    /// `migrate-incoming` until the MIGRATION `completed` event (decompression included).
    public static let incoming: Phase = "incoming"
    /// `query-status` / `cont`: the guest runs.
    public static let cont: Phase = "cont"
    /// First `guest-sync-delimited` answered.
    public static let agentSync: Phase = "qga-sync"
    /// `guest-set-time` (the resumed clock is as old as the snapshot).
    public static let setTime: Phase = "set-time"
    /// `device_add virtio-9p-pci`.
    public static let hotPlug: Phase = "hot-plug"
    /// `mount-host-fs --post-resume` in the guest.
    public static let mount: Phase = "mount"
    /// Secrets generated, internal-pck written, `trigger-fast-rotate` run to exit 0.
    public static let rotate: Phase = "rotate"
    /// `trigger-fast-rotate` itself, from its start in the guest (internal-pck is
    /// already written) to its exit.
    public static let trigger: Phase = "trigger"
    /// All four services answering 200.
    public static let healthy: Phase = "healthy"
    /// Cold boot: launch until the services first answer.
    public static let boot: Phase = "boot"
    /// Capture: stop + migrate + compression.
    public static let migrate: Phase = "migrate"
    /// Capture: QEMU has exited and the snapshot is committed.
    public static let commit: Phase = "commit"
}

/// Observes phases as they start and end: `bench` reports them, tests use the start of
/// `.rotate` to check that internal-pck is already written (§4.19-20).
public protocol PhaseObserver: Sendable {
    func phaseStarted(_ phase: Phase)
    func phaseEnded(_ phase: Phase, after duration: Duration)
}

/// The phases of one command, in the order they ended, with their durations. Phases
/// may overlap (the hot-plug runs while the agent syncs; mount and rotation run at the
/// same time), so the durations do not add up to the total.
public final class PhaseTimings: Sendable {
    public struct Entry: Sendable, Equatable {
        public let phase: Phase
        public let duration: Duration
    }

    private struct State {
        var entries: [Entry] = []
    }

    private let state = Mutex(State())
    private let observer: (any PhaseObserver)?
    public let started: ContinuousClock.Instant

    public init(observer: (any PhaseObserver)? = nil, started: ContinuousClock.Instant = .now) {
        self.observer = observer
        self.started = started
    }

    /// Runs `body` as `phase`; its duration is recorded whether it succeeds or throws.
    public func measure<T>(_ phase: Phase, _ body: () async throws -> T) async rethrows -> T {
        observer?.phaseStarted(phase)
        let begin = ContinuousClock.now
        defer { record(phase, ContinuousClock.now - begin) }
        return try await body()
    }

    /// Starts `phase` by hand (for phases whose start and end are in different places);
    /// pass the result to `end`.
    public func begin(_ phase: Phase) -> ContinuousClock.Instant {
        observer?.phaseStarted(phase)
        return .now
    }

    public func end(_ phase: Phase, since begin: ContinuousClock.Instant) {
        record(phase, ContinuousClock.now - begin)
    }

    public func record(_ phase: Phase, _ duration: Duration) {
        state.withLock { $0.entries.append(Entry(phase: phase, duration: duration)) }
        observer?.phaseEnded(phase, after: duration)
    }

    public var entries: [Entry] { state.withLock { $0.entries } }

    /// Elapsed since `started`.
    public var elapsed: Duration { ContinuousClock.now - started }
}
