import StackCore
import StackProcess
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Finds out whether an accelerator really runs a guest, by booting `KVMProbeFirmware`
/// under it with a short deadline: `/dev/kvm` being writable is not enough (here it is
/// a nested-virtualisation module on which a stock kernel dies at `cmpxchg16b`).
///
/// The payload covers the mode switches and cmpxchg16b, not a whole kernel; a failure
/// later in a real boot is caught at runtime instead: the orchestrator reads QEMU's log
/// (`QEMULogDiagnosis.acceleratorFailure`) and calls
/// `AcceleratorVerdictCache.markUnusable`, so the next start uses tcg.
/// Only x86 has a payload; for arm64 guests KVM is trusted when `/dev/kvm` opens.
public struct AcceleratorProbe: Sendable {
    public var qemu: QEMUBinary
    public var architecture: GuestArchitecture
    /// Holds the firmware image and debug-console transcript while a probe runs.
    public var scratchDirectory: String
    /// A working accelerator finishes in ~30 ms; a broken one hangs or pauses.
    public var deadline: Duration
    public var kvmDevice: String

    public init(qemu: QEMUBinary, architecture: GuestArchitecture, scratchDirectory: String,
                deadline: Duration = .milliseconds(1500), kvmDevice: String = "/dev/kvm") {
        self.qemu = qemu
        self.architecture = architecture
        self.scratchDirectory = scratchDirectory
        self.deadline = deadline
        self.kvmDevice = kvmDevice
    }

    /// The cached KVM verdict for this QEMU and kernel, or a fresh probe (then cached).
    public func kvmVerdict(cache: AcceleratorVerdictCache, qemuVersion: String, kernelRelease: String) async -> AcceleratorVerdict {
        if let known = cache.verdict(for: .kvm, qemuVersion: qemuVersion, kernelRelease: kernelRelease) {
            return known
        }
        let verdict = await probe(.kvm, qemuVersion: qemuVersion, kernelRelease: kernelRelease)
        // A cache that cannot be written only costs another probe next time.
        try? cache.store(verdict)
        return verdict
    }

    /// Boots the probe firmware under `accelerator`. Never hangs: the QEMU process
    /// group is killed at `deadline`.
    public func probe(_ accelerator: Accelerator, qemuVersion: String, kernelRelease: String) async -> AcceleratorVerdict {
        func verdict(_ usable: Bool, _ detail: String) -> AcceleratorVerdict {
            AcceleratorVerdict(accelerator: accelerator, usable: usable, detail: detail, qemuVersion: qemuVersion, kernelRelease: kernelRelease)
        }
        if accelerator == .kvm {
            let fd = open(kvmDevice, O_RDWR | O_CLOEXEC)
            if fd < 0 { return verdict(false, "cannot open \(kvmDevice): \(StackError.describe(errno: errno))") }
            close(fd)
        }
        guard architecture == .amd64 else {
            return verdict(true, "not probed (no \(architecture.rawValue) payload); \(accelerator == .kvm ? kvmDevice + " opens" : "assumed to work")")
        }

        let token = "\(getpid())-\(RandomToken.hex(bytes: 6))"
        let firmwarePath = Path.join(scratchDirectory, "probe-\(token).bin")
        let transcriptPath = Path.join(scratchDirectory, "probe-\(token).log")
        defer {
            try? FileSystem.removeFile(firmwarePath)
            try? FileSystem.removeFile(transcriptPath)
        }
        do {
            try FileSystem.makeDirectory(scratchDirectory, mode: 0o700)
            try HostError.translating { try AtomicFile(path: firmwarePath, mode: 0o600).write(KVMProbeFirmware.image) }
        } catch {
            return verdict(false, "probe could not run: \(error)")
        }

        let arguments = [
            "-nodefaults", "-no-user-config", "-machine", "q35", "-accel", accelerator.rawValue, "-cpu", "max",
            "-m", "16", "-display", "none", "-no-reboot", "-bios", firmwarePath,
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-debugcon", "file:" + transcriptPath,
        ]
        let started = ContinuousClock.now
        let outcome: Result<CommandOutput, any Error>
        do {
            let path = try qemu.resolvedPath()
            var command = Command(path, arguments: arguments, environment: qemu.environment, processGroup: .new)
            // A vCPU stuck in a broken KVM spins until killed. Our own deadline kills it,
            // but if this process dies first nothing would: coreutils `timeout` is a
            // watchdog that outlives us and kills QEMU a little after the deadline.
            if let watchdog = try? Command.resolve("timeout", searchPath: qemu.searchPath) {
                let seconds = deadline.components.seconds + 3
                command = Command(watchdog, arguments: ["-s", "KILL", String(seconds), path] + arguments,
                                  environment: qemu.environment, processGroup: .new)
            }
            outcome = .success(try await command.run(timeout: deadline, outputLimit: 64 * 1024))
        } catch {
            outcome = .failure(error)
        }
        let elapsed = ContinuousClock.now - started
        let transcript = (try? POSIX.readFile(transcriptPath, limit: 4096)) ?? []
        let stages = KVMProbeFirmware.stagesReached(transcript)
        let reached = stages.isEmpty ? "no checkpoint" : "reached " + stages.joined(separator: ", ")

        switch outcome {
        case .success(let output) where output.status == .exited(KVMProbeFirmware.successExitStatus):
            return verdict(true, "probe guest ran real, protected and long mode and cmpxchg16b in \(Seconds.format(elapsed))")
        case .success(let output) where output.status == .exited(KVMProbeFirmware.wrongResultExitStatus):
            return verdict(false, "cmpxchg16b gave a wrong result under \(accelerator.rawValue) (\(reached))")
        case .success(let output):
            let complaint = output.standardErrorText.split(whereSeparator: \.isNewline).first.map { ": \($0)" } ?? ""
            return verdict(false, "probe guest ended with \(output.status) after \(reached)\(complaint)")
        case .failure(let error as ProcessError) where error.code == .timedOut:
            return verdict(false, "probe guest made no progress within \(Seconds.format(deadline)) (\(reached))")
        case .failure(let error):
            return verdict(false, "probe could not run: \(error)")
        }
    }
}
