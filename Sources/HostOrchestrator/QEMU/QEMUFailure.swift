/// What went wrong, read from QEMU's own messages (its `-D` log and stderr). Under
/// `-daemonize` these are the only trace of a failed launch or resume (docs/platform-facts.md), and
/// the category decides what the orchestrator does next: a busy port is the user's to
/// fix, an incompatible or damaged snapshot is quarantined, an accelerator failure
/// vetoes that accelerator (`AcceleratorVerdictCache.markUnusable`) and falls back.
public enum QEMUFailure: Sendable, Equatable {
    /// "Could not set up host forwarding rule 'tcp:127.0.0.1:26700-:8101'".
    case hostForwarding(port: UInt16?, line: String)
    /// "KVM internal error", "emulation failure", "failed to initialize kvm", hvf errors.
    case accelerator(line: String)
    /// The snapshot was made by a different command line ("Size mismatch", "Unknown
    /// ramblock", "Unknown savevm section", "Missing section footer").
    case snapshotIncompatible(line: String)
    /// The snapshot stream is broken ("load of migration failed", "Not a migration stream").
    case snapshotDamaged(line: String)

    /// The first recognised failure in `text`, or nil.
    public static func diagnose(_ text: String) -> QEMUFailure? {
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = String(rawLine)
            if line.contains("Could not set up host forwarding rule") {
                return .hostForwarding(port: hostPort(in: line), line: line)
            }
            if line.contains("KVM internal error") || line.contains("emulation failure") || line.contains("failed to initialize kvm")
                || line.contains("failed to initialize hvf") || line.contains("HV_ERROR") || line.contains("kvm run failed") {
                return .accelerator(line: line)
            }
            if line.contains("Size mismatch") || line.contains("Unknown ramblock") || line.contains("Unknown savevm section")
                || line.contains("Missing section footer") || line.contains("Length mismatch") {
                return .snapshotIncompatible(line: line)
            }
            if line.contains("load of migration failed") || line.contains("Not a migration stream") {
                return .snapshotDamaged(line: line)
            }
        }
        return nil
    }

    public var line: String {
        switch self {
        case .hostForwarding(_, let line), .accelerator(let line), .snapshotIncompatible(let line), .snapshotDamaged(let line): line
        }
    }

    /// `…Could not set up host forwarding rule 'tcp:127.0.0.1:26700-:8101'` → 26700
    /// (QEMU prefixes the message with the whole `-netdev` option, which names every port).
    static func hostPort(in line: String) -> UInt16? {
        guard let rule = line.firstRange(of: "Could not set up host forwarding rule")?.upperBound,
              let start = line[rule...].firstRange(of: "127.0.0.1:")?.upperBound else { return nil }
        return UInt16(line[start...].prefix(while: { $0.isNumber }))
    }
}
