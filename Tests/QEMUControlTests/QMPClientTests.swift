@testable import QEMUControl
import StackCore
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// QMPClient against a real `qemu-system-x86_64 -machine none`.
@Suite struct QMPClientTests {
    @Test func connectNegotiatesAndReportsTheInstalledVersion() async throws {
        let banner = try await TestShell.run("\(QEMUProcess.executable) --version | head -n 1")
        try await QEMUProcess.with { qemu in
            let qmp = try await QMPClient.connect(path: qemu.monitorPath)
            defer { qmp.close() }
            #expect(banner.contains("version \(qmp.version.description)"))
            #expect(qmp.version >= QEMUVersion(major: 7, minor: 0, micro: 0))
            // Commands work only after qmp_capabilities (§5.4-10: un-negotiated commands are rejected).
            #expect(try await qmp.queryStatus().status == .running)
        }
    }

    /// §5.4-8: replies are matched by id, never by order or by grepping: 200 concurrent
    /// commands whose results echo their argument, while stop/cont emit events in between.
    @Test func concurrentCommandsAreMatchedByID() async throws {
        try await QEMUProcess.with { qemu in
            let qmp = try await QMPClient.connect(path: qemu.monitorPath)
            defer { qmp.close() }
            struct Option: Decodable, Sendable { let option: String }
            struct Query: Encodable, Sendable { let option: String }
            let names = try await qmp.execute("query-command-line-options", returning: [Option].self).map(\.option)
            try #require(names.count >= 10)
            let requests = (0..<200).map { names[$0 % names.count] }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for name in requests {
                    group.addTask {
                        let answer = try await qmp.execute("query-command-line-options", arguments: Query(option: name), returning: [Option].self)
                        #expect(answer.map(\.option) == [name])
                    }
                }
                group.addTask {
                    for _ in 0..<10 {
                        try await qmp.stop()
                        try await qmp.cont()
                    }
                }
                try await group.waitForAll()
            }
            let events = qmp.takeBufferedEvents()
            #expect(events.filter { $0.name == "STOP" }.count == 10)
            #expect(events.filter { $0.name == "RESUME" }.count == 10)
            #expect(events.map(\.sequence) == events.map(\.sequence).sorted())
        }
    }

    /// Events are awaited without polling: a waiter registered before the event wakes
    /// when it arrives; one registered after finds it buffered; `after:` ignores older ones.
    @Test func stopAndContEventsAreAwaited() async throws {
        try await QEMUProcess.with { qemu in
            let qmp = try await QMPClient.connect(path: qemu.monitorPath)
            defer { qmp.close() }
            let cursor = qmp.eventCursor
            async let stopped = qmp.waitForEvent("STOP", after: cursor, deadline: .now + .seconds(10))
            try await eventually { qmp.waitingCount > 0 }
            try await qmp.stop()
            #expect(try await stopped.name == "STOP")
            #expect(try await qmp.queryStatus() == VMStatus(status: .paused, running: false))

            try await qmp.cont()
            let resumed = try await qmp.waitForEvent("RESUME", deadline: .now + .seconds(10))
            #expect(resumed.sequence > cursor)
            #expect(try await qmp.queryStatus().status == .running)

            // A second STOP wait must not be satisfied by the consumed one.
            let marker = qmp.eventCursor
            let error = try await #require(throws: QEMUControlError.self) {
                try await qmp.waitForEvent("STOP", after: marker, deadline: .now + .milliseconds(100))
            }
            #expect(error.code == .timedOut)
        }
    }

    @Test func errorRepliesCarryQEMUsClassAndDescription() async throws {
        try await QEMUProcess.with { qemu in
            let qmp = try await QMPClient.connect(path: qemu.monitorPath)
            defer { qmp.close() }
            let missing = try await #require(throws: QEMUControlError.self) { try await qmp.execute("no-such-command") }
            #expect(missing.code == .commandFailed)
            #expect(missing.qemuClass == "CommandNotFound")
            #expect(missing.qemuDescription?.contains("no-such-command") == true)
            #expect(missing.command == "no-such-command")

            let badDevice = try await #require(throws: QEMUControlError.self) {
                try await qmp.deviceAdd(driver: "no-such-driver", id: "x")
            }
            #expect(badDevice.qemuClass == "GenericError")
            #expect(badDevice.message.contains("device_add"))
            // The connection stays usable after errors.
            #expect(try await qmp.queryStatus().running)
        }
    }

    /// A call fails at its deadline when QEMU does not answer (here: stopped with
    /// SIGSTOP); the late reply is then dropped, not taken for the next call's.
    @Test func callFailsAtItsDeadlineAndLateReplyIsDropped() async throws {
        try await QEMUProcess.with { qemu in
            let qmp = try await QMPClient.connect(path: qemu.monitorPath)
            defer { qmp.close() }
            qemu.send(SIGSTOP)
            let started = ContinuousClock.now
            let error = try await #require(throws: QEMUControlError.self) {
                try await qmp.queryStatus(deadline: .now + .milliseconds(200))
            }
            let waited = started.duration(to: .now)
            qemu.send(SIGCONT)
            #expect(error.code == .timedOut)
            #expect(error.message.contains("query-status"))
            #expect(waited >= .milliseconds(200))
            #expect(waited < .seconds(2))
            // A differently shaped reply proves the stale query-status answer is not taken.
            let capabilities = try await qmp.queryMigrateCapabilities()
            #expect(capabilities.contains { $0.capability == .events })
            #expect(qmp.waitingCount == 0)
        }
    }

    /// Cancelling a waiting call ends it at once with CancellationError; its late reply
    /// is dropped and the connection stays usable.
    @Test func cancelledCallEndsPromptlyAndConnectionStaysUsable() async throws {
        try await QEMUProcess.with { qemu in
            let qmp = try await QMPClient.connect(path: qemu.monitorPath)
            defer { qmp.close() }
            qemu.send(SIGSTOP)
            let call = Task { try await qmp.queryStatus(deadline: .now + .seconds(30)) }
            try await eventually { qmp.waitingCount > 0 }
            let started = ContinuousClock.now
            call.cancel()
            await #expect(throws: CancellationError.self) { try await call.value }
            #expect(started.duration(to: .now) < .seconds(2))
            #expect(qmp.waitingCount == 0)
            qemu.send(SIGCONT)
            #expect(try await qmp.queryMigrateCapabilities().isEmpty == false)
        }
    }

    /// When QEMU goes away, every pending call and event wait fails at once.
    @Test func socketClosingFailsAllPendingCalls() async throws {
        try await QEMUProcess.with { qemu in
            let qmp = try await QMPClient.connect(path: qemu.monitorPath)
            defer { qmp.close() }
            qemu.send(SIGSTOP)
            let started = ContinuousClock.now
            let failures = try await withThrowingTaskGroup(of: QEMUControlError.Code?.self) { group in
                for _ in 0..<5 {
                    group.addTask {
                        do {
                            _ = try await qmp.queryStatus(deadline: .now + .seconds(30))
                            return nil
                        } catch let error as QEMUControlError {
                            return error.code
                        }
                    }
                }
                group.addTask {
                    do {
                        _ = try await qmp.waitForEvent("SHUTDOWN", deadline: .now + .seconds(30))
                        return nil
                    } catch let error as QEMUControlError {
                        return error.code
                    }
                }
                try await eventually { qmp.waitingCount == 6 }
                qemu.send(SIGKILL)
                var codes: [QEMUControlError.Code?] = []
                for try await code in group { codes.append(code) }
                return codes
            }
            #expect(failures == Array(repeating: .connectionClosed, count: 6))
            #expect(started.duration(to: .now) < .seconds(10))
            #expect(qmp.closedError?.code == .connectionClosed)
            // Later calls fail at once too.
            let late = try await #require(throws: QEMUControlError.self) { try await qmp.queryStatus() }
            #expect(late.code == .connectionClosed)
        }
    }

    @Test func connectToMissingSocketTimesOutClearly() async throws {
        let directory = try TemporaryDirectory(prefix: "qc")
        defer { directory.remove() }
        let error = try await #require(throws: QEMUControlError.self) {
            _ = try await QMPClient.connect(path: directory.file("absent.sock"), deadline: .now + .milliseconds(50))
        }
        #expect(error.code == .timedOut)
        #expect(error.message.contains("absent.sock"))
    }

    @Test func quitEndsQEMU() async throws {
        try await QEMUProcess.with { qemu in
            let qmp = try await QMPClient.connect(path: qemu.monitorPath)
            defer { qmp.close() }
            try await qmp.quit()
            #expect(try await qemu.waitForExit() == .exited(0))
            #expect(try await qmp.waitForEvent("SHUTDOWN").data["reason"] == "host-qmp-quit")
        }
    }

    /// A large reply (the whole QMP schema) arrives in many reads and decodes.
    @Test func largeSchemaReplyDecodes() async throws {
        try await QEMUProcess.with { qemu in
            let qmp = try await QMPClient.connect(path: qemu.monitorPath)
            defer { qmp.close() }
            let schema = try await qmp.execute("query-qmp-schema")
            let names = try #require(schema.arrayValue).compactMap { $0["name"]?.stringValue }
            #expect(names.contains("query-status"))
            #expect(names.count > 500)
        }
    }
}

/// Waits (polling an in-process counter from 1 ms, doubling to 10 ms) until `condition`
/// holds; fails the test after `timeout` instead of hanging.
func eventually(timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    var delay = Duration.milliseconds(1)
    while !condition() {
        guard ContinuousClock.now < deadline else {
            throw QEMUControlError(.timedOut, "condition not reached within \(timeout)")
        }
        try await Task.sleep(for: delay)
        delay = min(delay * 2, .milliseconds(10))
    }
}
