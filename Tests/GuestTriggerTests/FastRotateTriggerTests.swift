import GuestTrigger
import Logging
import StackCore
import StackProcess
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `FastRotateTrigger` in process: strict stdin, the runtime command line, and running a
/// command in a (shim) container with the values in its environment.
@Suite struct FastRotateTriggerTests {
    static let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    static func trigger(_ configuration: TriggerConfiguration = TriggerConfiguration(), environment: [String: String] = ["PATH": Command.defaultSearchPath]) -> FastRotateTrigger {
        FastRotateTrigger(configuration: configuration, environment: environment, logger: logger)
    }

    /// §3.1 (values never on a command line, §3.3-4): the runtime gets
    /// `exec -e NAME ×4 CONTAINER CMD`; the values are in its environment only.
    @Test func commandNamesTheVariablesAndCarriesValuesInTheEnvironment() throws {
        let secrets = InternalSecrets.generate()
        let command = Self.trigger(TriggerConfiguration(runtime: "podman", container: "box", rotateCommand: "/x/rotate"),
                                   environment: ["PATH": "/p", "DOCKER_HOST": "unix:///d.sock"]).command(for: secrets)
        #expect(command.executable == "podman")
        #expect(command.arguments == ["exec", "-e", "STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY",
                                      "-e", "STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY",
                                      "-e", "STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY",
                                      "-e", "CRON_SECRET", "box", "/x/rotate"])
        for name in InternalSecrets.Name.allCases {
            #expect(command.environment[name.variable] == secrets[name].unredacted)
            #expect(!command.arguments.contains(where: { $0.contains(secrets[name].unredacted) }))
        }
        #expect(command.environment["DOCKER_HOST"] == "unix:///d.sock")
    }

    /// §5.4 #6, #27: stdin is parsed strictly — exactly the four names, each hex64 and
    /// not a placeholder; anything else is an error naming the problem, never the value.
    @Test func parseAcceptsOnlyTheFourFreshValues() throws {
        let secrets = InternalSecrets.generate()
        #expect(try Self.trigger().parse(secrets.payload) == secrets)
        #expect(try Self.trigger().parse(secrets.payload + [UInt8(ascii: "\n")]) == secrets)
        let pck = secrets.publishableClientKey.unredacted
        let bad: [(String, String)] = [
            ("export STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY=\(pck)", "expected KEY=VALUE"),
            ("$(reboot)", "expected KEY=VALUE"),
            (String(decoding: secrets.payload, as: UTF8.self).replacingCRLF(), "carriage return"),
            (String(decoding: secrets.payload, as: UTF8.self) + "\nCRON_SECRET=\(secrets.cronSecret.unredacted)", "more than once"),
            (String(decoding: secrets.payload, as: UTF8.self) + "\nPATH=/evil", "unexpected key PATH"),
        ]
        for (text, problem) in bad {
            #expect {
                _ = try Self.trigger().parse(Array(text.utf8))
            } throws: { error in
                let message = "\(error)"
                return (error as? TriggerError)?.code == .invalidInput && message.contains(problem) && !message.contains(pck)
            }
        }
    }

    /// Bounded stdin: more than `inputLimit` bytes is refused.
    @Test func readInputIsBounded() async throws {
        let directory = try TemporaryDirectory(prefix: "gt")
        defer { directory.remove() }
        let path = directory.file("big")
        try AtomicFile(path: path).write([UInt8](repeating: 0x41, count: 100))
        let fd = try POSIX.open(path, O_RDONLY)
        defer { POSIX.close(fd) }
        #expect(throws: TriggerError.self) {
            _ = try Self.trigger(TriggerConfiguration(inputLimit: 99)).readInput(from: fd)
        }
    }

    /// §3.3-5: the in-container command's exit status is returned as is; it saw the four
    /// values in its environment through `docker exec -e NAME`.
    @Test func runReturnsTheContainerCommandsStatus() async throws {
        let directory = try TemporaryDirectory(prefix: "gt")
        defer { directory.remove() }
        let shim = try DockerShim.create(in: directory.path)
        try shim.addContainer("stack", environment: ["PATH": Command.defaultSearchPath, "CRON_SECRET": "placeholder-in-container"])
        let script = directory.file("check")
        let secrets = InternalSecrets.generate()
        try AtomicFile(path: script, mode: 0o755).write(Array("""
            #!/bin/sh
            [ "$CRON_SECRET" = "\(secrets.cronSecret.unredacted)" ] && [ "$STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY" = "\(secrets.publishableClientKey.unredacted)" ] || exit 3
            exit 42

            """.utf8))
        let trigger = Self.trigger(TriggerConfiguration(rotateCommand: script), environment: ["PATH": shim.path()])
        #expect(try await trigger.run(secrets: secrets) == .exited(42))

        try shim.setRunning("stack", false)
        #expect(try await trigger.run(secrets: secrets) == .exited(1))
    }

    /// A runtime that is not installed is a clear error, not a crash.
    @Test func missingRuntimeIsAnError() async throws {
        let trigger = Self.trigger(TriggerConfiguration(runtime: "no-such-runtime-xyz"), environment: ["PATH": "/nonexistent"])
        await #expect(throws: TriggerError.self) { _ = try await trigger.run(secrets: .generate()) }
    }
}

private extension String {
    func replacingCRLF() -> String {
        split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\r\n")
    }
}
