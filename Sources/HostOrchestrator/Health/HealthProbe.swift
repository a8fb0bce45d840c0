/// Probes the services in parallel and waits for them to be healthy, with short
/// per-try timeouts (a forward into a guest whose network is not up hangs rather than
/// refuses, docs/platform-facts.md) and polls that start at 10 ms and back off — no fixed sleeps
/// (§5.4 #3). Elapsed time is reported with sub-second precision (§5.4 #46).
///
/// A try that times out doubles that service's next timeout up to
/// `maximumTryTimeout`, so a service that is up but slow (a `/health?db=1` under TCG)
/// still gets answered, while a hung forward costs only `perTryTimeout` at first.
public struct HealthProbe: Sendable {
    public var ports: [ServiceEndpoint: UInt16]
    public var perTryTimeout: Duration
    public var maximumTryTimeout: Duration
    public var acceptedStatuses: Set<Int>

    public init(ports: [ServiceEndpoint: UInt16], perTryTimeout: Duration = .milliseconds(150),
                maximumTryTimeout: Duration = .seconds(1), acceptedStatuses: Set<Int> = [200]) {
        self.ports = ports
        self.perTryTimeout = perTryTimeout
        self.maximumTryTimeout = maximumTryTimeout
        self.acceptedStatuses = acceptedStatuses
    }

    public init(ports: PortConfiguration, perTryTimeout: Duration = .milliseconds(150)) {
        var map: [ServiceEndpoint: UInt16] = [:]
        for endpoint in ServiceEndpoint.allCases { map[endpoint] = endpoint.hostPort(in: ports) }
        self.init(ports: map, perTryTimeout: perTryTimeout)
    }

    /// One round: every endpoint probed at the same time.
    public func check(_ endpoints: [ServiceEndpoint]) async -> HealthReport {
        await check(endpoints, timeouts: Dictionary(uniqueKeysWithValues: endpoints.map { ($0, perTryTimeout) }))
    }

    /// Probes until one round finds every endpoint healthy, or `deadline` passes
    /// (`.notHealthy`, naming each unhealthy service and its last outcome). `progress`
    /// gets each unhealthy round and the time elapsed so far.
    public func waitUntilHealthy(_ endpoints: [ServiceEndpoint], deadline: ContinuousClock.Instant,
                                 progress: (@Sendable (HealthReport, Duration) -> Void)? = nil) async throws -> HealthWait {
        let started = ContinuousClock.now
        var timeouts = Dictionary(uniqueKeysWithValues: endpoints.map { ($0, perTryTimeout) })
        var interval = Duration.milliseconds(10)
        var rounds = 0
        var last = HealthReport(outcomes: [:], acceptedStatuses: acceptedStatuses)
        while true {
            try Task.checkCancellation()
            let remaining = deadline - ContinuousClock.now
            if remaining <= .zero { break }
            rounds += 1
            last = await check(endpoints, timeouts: timeouts.mapValues { min($0, remaining) })
            if last.isHealthy {
                return HealthWait(elapsed: ContinuousClock.now - started, rounds: rounds, report: last)
            }
            for (endpoint, outcome) in last.outcomes {
                timeouts[endpoint] = outcome == .timedOut ? min(timeouts[endpoint, default: perTryTimeout] * 2, maximumTryTimeout) : perTryTimeout
            }
            progress?(last, ContinuousClock.now - started)
            let pause = min(interval, deadline - ContinuousClock.now)
            if pause > .zero { try await Task.sleep(for: pause) }
            interval = min(interval * 3 / 2, .milliseconds(200))
        }
        let elapsed = ContinuousClock.now - started
        let failing = last.unhealthy.map { "\($0.displayName): \(last.outcomes[$0].map(String.init(describing:)) ?? "not probed")" }
        throw HostError(.notHealthy, "\(endpoints.map(\.displayName).joined(separator: ", ")) not healthy after \(Seconds.format(elapsed)) (\(failing.joined(separator: "; ")))")
    }

    private func check(_ endpoints: [ServiceEndpoint], timeouts: [ServiceEndpoint: Duration]) async -> HealthReport {
        let ports = self.ports
        let outcomes = await withTaskGroup(of: (ServiceEndpoint, HTTPProbeOutcome).self) { group in
            for endpoint in endpoints {
                let timeout = timeouts[endpoint] ?? perTryTimeout
                group.addTask {
                    guard let port = ports[endpoint] else { return (endpoint, .failed("no port configured")) }
                    return (endpoint, await HTTPStatusProbe.get(port: port, path: endpoint.path, timeout: timeout))
                }
            }
            var result: [ServiceEndpoint: HTTPProbeOutcome] = [:]
            for await (endpoint, outcome) in group { result[endpoint] = outcome }
            return result
        }
        return HealthReport(outcomes: outcomes, acceptedStatuses: acceptedStatuses)
    }
}

/// The outcomes of one probe round.
public struct HealthReport: Sendable, Equatable {
    public var outcomes: [ServiceEndpoint: HTTPProbeOutcome]
    public var acceptedStatuses: Set<Int>

    public func isHealthy(_ endpoint: ServiceEndpoint) -> Bool {
        if case .status(let code)? = outcomes[endpoint] { return acceptedStatuses.contains(code) }
        return false
    }

    /// Every probed endpoint answered with an accepted status (and at least one was probed).
    public var isHealthy: Bool { !outcomes.isEmpty && outcomes.keys.allSatisfy(isHealthy) }

    /// In `ServiceEndpoint.all` order.
    public var unhealthy: [ServiceEndpoint] {
        ServiceEndpoint.all.filter { outcomes[$0] != nil && !isHealthy($0) }
    }
}

/// A successful wait.
public struct HealthWait: Sendable, Equatable {
    public var elapsed: Duration
    public var rounds: Int
    public var report: HealthReport
}
