import QEMUControl
import StackCore

/// Replaces the snapshot's public placeholder secrets with fresh ones (§4.10 step 6.9):
/// four CSPRNG values; the publishable key written to VM_DIR/internal-pck (0600, atomic,
/// no newline) BEFORE the guest is asked to rotate, so the CLI never reads a key the
/// backend does not accept yet; then `trigger-fast-rotate` with the four values as its
/// stdin (QGA `input-data`: never in argv or in the guest's environment), which must
/// exit 0. A non-zero exit, a signal or no exit code at all is a failure (§5.4 #8).
struct GuestSecretRotation: Sendable {
    static let trigger = "/usr/local/bin/trigger-fast-rotate"

    let internalPCKPath: String

    /// A trigger running in the guest.
    struct Started: Sendable {
        let secrets: InternalSecrets
        let pid: Int64
        let since: ContinuousClock.Instant
    }

    let timings: PhaseTimings

    /// Returns the secrets now live in the guest.
    func rotate(agent: GuestAgentClient, deadline: ContinuousClock.Instant) async throws -> InternalSecrets {
        try await finish(try await start(agent: agent, deadline: deadline), agent: agent, deadline: deadline)
    }

    /// Generates the secrets, writes internal-pck, starts the trigger (returns at once).
    /// The `.trigger` phase starts after internal-pck is written and before the guest
    /// process is started (observers check that order, §4.19-20).
    func start(agent: GuestAgentClient, deadline: ContinuousClock.Instant) async throws -> Started {
        let secrets = InternalSecrets.generate()
        try writeInternalPCK(secrets.publishableClientKey.unredacted)
        let since = timings.begin(.trigger)
        do {
            let pid = try await agent.startExec(path: GuestSecretRotation.trigger, input: secrets.payload, captureOutput: true, deadline: deadline)
            return Started(secrets: secrets, pid: pid, since: since)
        } catch {
            throw HostError(.guestFailed, "cannot start trigger-fast-rotate in the guest: \(error)")
        }
    }

    /// Waits for the started trigger; throws unless it exited 0.
    func finish(_ started: Started, agent: GuestAgentClient, deadline: ContinuousClock.Instant) async throws -> InternalSecrets {
        let result: GuestExecResult
        do {
            result = try await agent.waitForExit(pid: started.pid, deadline: deadline)
        } catch let error as QEMUControlError where error.code == .timedOut {
            throw HostError(.guestFailed, "trigger-fast-rotate did not complete before its deadline: \(error.message)")
        }
        timings.end(.trigger, since: started.since)
        guard result.isSuccess else {
            let tail = (result.standardErrorText + "\n" + result.standardOutputText)
                .split(whereSeparator: \.isNewline).suffix(3).joined(separator: " | ")
            throw HostError(.guestFailed, "trigger-fast-rotate failed in the guest (\(result.termination))\(tail.isEmpty ? "" : ": \(tail)")")
        }
        return started.secrets
    }

    /// `EMULATOR_NO_ROTATION=1`: the snapshot's placeholder stays live, and internal-pck says so.
    func writePlaceholder() throws {
        try writeInternalPCK(InternalSecrets.Name.publishableClientKey.placeholder)
    }

    private func writeInternalPCK(_ value: String) throws {
        try HostError.translating { try AtomicFile(path: internalPCKPath, mode: 0o600).write(Array(value.utf8)) }
    }
}
