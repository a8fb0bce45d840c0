import StackCore
import StackProcess

/// Small shell one-liners for test set-up (fixtures, inspection). Product code never
/// goes through a shell.
public enum TestShell {
    /// Runs `script` with `/bin/sh -c`; throws unless it exits 0. Returns stdout.
    @discardableResult
    public static func run(_ script: String, environment: [String: String]? = nil, timeout: Duration = .seconds(120)) async throws -> String {
        let output = try await Command("/bin/sh", arguments: ["-c", script], environment: environment ?? ProcessEnvironment.current)
            .run(timeout: timeout)
        guard output.status.isSuccess else {
            throw StackError(.systemCall, "sh -c failed (\(output.status)): \(script)\n\(output.standardErrorText)")
        }
        return output.standardOutputText
    }

    /// Runs `script` and returns whatever happened, success or not.
    public static func output(_ script: String, environment: [String: String]? = nil, timeout: Duration = .seconds(120)) async throws -> CommandOutput {
        try await Command("/bin/sh", arguments: ["-c", script], environment: environment ?? ProcessEnvironment.current).run(timeout: timeout)
    }
}
