#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import StackCore

/// Remembers accelerator verdicts in RUN_DIR, keyed by (accelerator, QEMU version,
/// kernel release), so the probe runs once per host configuration, and a launch that
/// dies under KVM at runtime can veto it for the following starts (`markUnusable`).
/// An unreadable cache is treated as empty: it only ever saves time.
public struct AcceleratorVerdictCache: Sendable {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    public func verdict(for accelerator: Accelerator, qemuVersion: String, kernelRelease: String) -> AcceleratorVerdict? {
        load().last { $0.hasKey(accelerator: accelerator, qemuVersion: qemuVersion, kernelRelease: kernelRelease) }
    }

    /// Replaces any verdict with the same key.
    public func store(_ verdict: AcceleratorVerdict) throws {
        var verdicts = load().filter {
            !$0.hasKey(accelerator: verdict.accelerator, qemuVersion: verdict.qemuVersion, kernelRelease: verdict.kernelRelease)
        }
        verdicts.append(verdict)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try HostError.translating { try encoder.encode(verdicts) }
        try FileSystem.makeDirectory(Path.directory(of: path), mode: 0o755)
        try HostError.translating { try AtomicFile(path: path, mode: 0o644).write(Array(data)) }
    }

    /// Records that a real guest failed under `accelerator` (e.g. "KVM internal error"
    /// in QEMU's log): later starts fall back to tcg without probing again.
    public func markUnusable(_ accelerator: Accelerator, qemuVersion: String, kernelRelease: String, reason: String) throws {
        try store(AcceleratorVerdict(accelerator: accelerator, usable: false, detail: reason,
                                     qemuVersion: qemuVersion, kernelRelease: kernelRelease))
    }

    private func load() -> [AcceleratorVerdict] {
        guard let bytes = try? POSIX.readFile(path, limit: 1024 * 1024) else { return [] }
        return (try? JSONDecoder().decode([AcceleratorVerdict].self, from: Data(bytes))) ?? []
    }
}
