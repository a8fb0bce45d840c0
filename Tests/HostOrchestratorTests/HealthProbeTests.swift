import StackCore
import StackProcess
import Synchronization
import Testing
@testable import HostOrchestrator
#if canImport(Glibc)
import Glibc
#endif

/// Against real local HTTP servers (node): healthy, failing, hanging and refusing ports.
@Suite struct HealthProbeTests {
    @Test func readsTheStatusOfRealServers() async throws {
        let refusing = try TestSockets.bound(listening: false)
        defer { close(refusing.fd) }
        try await withHTTPServers(["ok", "error", "hang"]) { servers in
            let ok = await HTTPStatusProbe.get(port: servers.ports[0], path: "/health?db=1", timeout: .seconds(2))
            #expect(ok == .status(200))
            let error = await HTTPStatusProbe.get(port: servers.ports[1], path: "/", timeout: .seconds(2))
            #expect(error == .status(500))
            let refused = await HTTPStatusProbe.get(port: refusing.port, path: "/", timeout: .seconds(2))
            #expect(refused == .refused)

            // Accepts, never answers: the per-try timeout is respected.
            let started = ContinuousClock.now
            let hung = await HTTPStatusProbe.get(port: servers.ports[2], path: "/", timeout: .milliseconds(150))
            let elapsed = ContinuousClock.now - started
            #expect(hung == .timedOut)
            #expect(elapsed >= .milliseconds(140) && elapsed < .seconds(5), "took \(elapsed)")
        }
    }

    @Test func statusLineParsing() {
        #expect(HTTPStatusProbe.parseStatusLine(Array("HTTP/1.1 204 No Content\r".utf8)[...]) == .status(204))
        #expect(HTTPStatusProbe.parseStatusLine(Array("HTTP/1.0 404".utf8)[...]) == .status(404))
        guard case .failed = HTTPStatusProbe.parseStatusLine(Array("SSH-2.0-OpenSSH".utf8)[...]) else {
            Issue.record("a non-HTTP banner is a failure")
            return
        }
    }

    /// The four probes run at the same time: four hung services cost one timeout, not four.
    /// Proven without a clock: the one listener behind all four ports answers only once it
    /// holds four connections at the same time, which probes made one after another
    /// never give it (each would time out after 30 s instead).
    @Test func probesRunInParallel() async throws {
        let listener = try TestSockets.bound(listening: true)
        let port = listener.port
        let answering = Task {
            await BlockingCall.run { () -> Int in
                var open: [Int32] = []
                while open.count < 4 {
                    let fd = accept(listener.fd, nil, nil)
                    guard fd >= 0 else { break }  // the listener was shut down: give up
                    open.append(fd)
                }
                defer { for fd in open { close(fd) } }
                guard open.count == 4 else { return open.count }
                let reply = Array("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8)
                for fd in open { _ = reply.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
                return 4
            }
        }
        let probe = HealthProbe(ports: [.dashboard: port, .backend: port, .minio: port, .inbucket: port], perTryTimeout: .seconds(30))
        let report = await probe.check(ServiceEndpoint.all)
        shutdown(listener.fd, Int32(SHUT_RDWR))  // wakes the accept loop if the probes never all arrived
        let heldAtOnce = await answering.value
        close(listener.fd)
        #expect(heldAtOnce == 4, "the listener never held four probe connections at once")
        #expect(report.outcomes.count == 4 && report.outcomes.values.allSatisfy { $0 == .status(200) }, "\(report.outcomes)")
        #expect(report.unhealthy.isEmpty)
    }

    /// §5.4 #46: a service that comes up ~400 ms after the first probe is detected soon
    /// after, and the wait reports sub-second elapsed time.
    @Test func waitsUntilEveryServiceIsHealthy() async throws {
        try await withHTTPServers(["ok", "late:400", "ok", "ok"]) { servers in
            let probe = HealthProbe(ports: [.dashboard: servers.ports[0], .backend: servers.ports[1], .minio: servers.ports[2], .inbucket: servers.ports[3]])
            let rounds = RoundCounter()
            let wait = try await probe.waitUntilHealthy(ServiceEndpoint.all, deadline: .now + .seconds(30)) { report, _ in
                #expect(!report.unhealthy.isEmpty)
                rounds.increment()
            }
            #expect(wait.report.isHealthy)
            #expect(wait.elapsed > .milliseconds(400) && wait.elapsed < .seconds(20), "\(wait.elapsed)")
            #expect(wait.rounds == rounds.value + 1)
            #expect(wait.rounds >= 2)
            #expect(Seconds.format(wait.elapsed).contains("."))
        }
    }

    @Test func dependencySubsetIgnoresTheOthers() async throws {
        let refusing = try TestSockets.bound(listening: false)
        defer { close(refusing.fd) }
        try await withHTTPServers(["ok", "ok"]) { servers in
            // A generous per-try timeout: this test is about which services are probed.
            let probe = HealthProbe(ports: [.minio: servers.ports[0], .inbucket: servers.ports[1], .backend: refusing.port, .dashboard: refusing.port],
                                    perTryTimeout: .seconds(3), maximumTryTimeout: .seconds(3))
            let wait = try await probe.waitUntilHealthy(ServiceEndpoint.dependencies, deadline: .now + .seconds(5))
            #expect(wait.rounds == 1)
            #expect(Set(wait.report.outcomes.keys) == [.minio, .inbucket])
        }
    }

    /// The deadline is kept even when a service hangs, and the error names each
    /// unhealthy service with its last outcome.
    @Test func deadlinePassesWithAClearReason() async throws {
        let refusing = try TestSockets.bound(listening: false)
        defer { close(refusing.fd) }
        try await withHTTPServers(["ok", "error", "hang"]) { servers in
            // A 1 s per-try timeout: even a loaded machine answers the 500 within it.
            let probe = HealthProbe(ports: [.dashboard: servers.ports[0], .backend: servers.ports[1], .minio: servers.ports[2], .inbucket: refusing.port],
                                    perTryTimeout: .seconds(1))
            let started = ContinuousClock.now
            do {
                _ = try await probe.waitUntilHealthy(ServiceEndpoint.all, deadline: .now + .milliseconds(2500))
                Issue.record("cannot be healthy")
            } catch let error as HostError {
                let elapsed = ContinuousClock.now - started
                #expect(error.code == .notHealthy)
                // Bounded by the deadline plus one probe round; generous for a loaded machine.
                #expect(elapsed >= .milliseconds(2500) && elapsed < .seconds(15), "took \(elapsed)")
                #expect(error.message.contains("Backend: HTTP 500"), "\(error.message)")
                #expect(error.message.contains("MinIO: timed out"), "\(error.message)")
                #expect(error.message.contains("Inbucket HTTP: connection refused"), "\(error.message)")
                #expect(!error.message.contains("Dashboard:"), "\(error.message)")
            }
        }
    }
}

final class RoundCounter: Sendable {
    private let count = Mutex(0)
    func increment() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}
