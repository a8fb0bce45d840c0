import StackCore
import StackProcess
import TestSupport
import Testing
@testable import HostOrchestrator

@Suite struct AcceleratorPolicyTests {
    let linux = HostPlatform(architecture: .amd64, os: .linux, kernelRelease: "6.1")
    let mac = HostPlatform(architecture: .arm64, os: .darwin, kernelRelease: "24.0")

    func verdict(_ usable: Bool) -> AcceleratorVerdict {
        AcceleratorVerdict(accelerator: .kvm, usable: usable, detail: usable ? "ok" : "hangs", qemuVersion: "7.2.22", kernelRelease: "6.1")
    }

    /// §4.19-3, refined: kvm only when the probe says a guest really runs.
    @Test func linuxUsesKVMOnlyWhenTheProbePasses() async {
        let good = await AcceleratorPolicy.choose(guest: .amd64, host: linux, override: nil, hvfListed: { false }, kvmVerdict: { verdict(true) })
        #expect(good.accelerator == .kvm)
        let bad = await AcceleratorPolicy.choose(guest: .amd64, host: linux, override: nil, hvfListed: { false }, kvmVerdict: { verdict(false) })
        #expect(bad.accelerator == .tcg)
        #expect(bad.reason.contains("hangs"))
    }

    /// §4.19-4.
    @Test func macOSUsesHVFWhenListed() async {
        #expect(await AcceleratorPolicy.choose(guest: .arm64, host: mac, override: nil, hvfListed: { true }, kvmVerdict: { verdict(true) }).accelerator == .hvf)
        #expect(await AcceleratorPolicy.choose(guest: .arm64, host: mac, override: nil, hvfListed: { false }, kvmVerdict: { verdict(true) }).accelerator == .tcg)
    }

    /// §4.19-5: cross-arch is tcg without asking anything; amd64 on arm64 uses qemu64.
    @Test func crossArchitectureIsTCGAndNeverProbes() async {
        let choice = await AcceleratorPolicy.choose(guest: .amd64, host: mac, override: nil,
                                                    hvfListed: { Issue.record("hvf asked"); return true },
                                                    kvmVerdict: { Issue.record("kvm probed"); return verdict(true) })
        #expect(choice.accelerator == .tcg)
        #expect(AcceleratorPolicy.cpuModel(guest: .amd64, host: mac, accelerator: .tcg) == "qemu64")
        #expect(AcceleratorPolicy.cpuModel(guest: .amd64, host: linux, accelerator: .tcg) == "max")
        #expect(AcceleratorPolicy.cpuModel(guest: .amd64, host: linux, accelerator: .kvm) == "max")
        // §5.4 #24: the model the image build uses for arm64 under emulation.
        #expect(AcceleratorPolicy.cpuModel(guest: .arm64, host: linux, accelerator: .tcg) == "cortex-a76")
        #expect(AcceleratorPolicy.cpuModel(guest: .arm64, host: mac, accelerator: .hvf) == "max")
    }

    @Test func overrideWinsWithoutProbing() async {
        let choice = await AcceleratorPolicy.choose(guest: .amd64, host: linux, override: .kvm, hvfListed: { false },
                                                    kvmVerdict: { Issue.record("probed"); return verdict(false) })
        #expect(choice == AcceleratorChoice(.kvm, reason: "EMULATOR_ACCEL=kvm"))
    }

    @Test func acceleratorHelpParsing() {
        let output = "Accelerators supported in QEMU binary:\ntcg\nhvf\n"
        #expect(AcceleratorPolicy.acceleratorListed("hvf", inHelpOutput: output))
        #expect(!AcceleratorPolicy.acceleratorListed("kvm", inHelpOutput: output))
        #expect(!AcceleratorPolicy.acceleratorListed("QEMU", inHelpOutput: output))
    }
}

@Suite struct AcceleratorProbeTests {
    let qemu = QEMUBinary(architecture: .amd64, searchPath: Command.defaultSearchPath)

    @Test func readsTheInstalledQEMUVersionAndAccelerators() async throws {
        let version = try await qemu.version()
        #expect(version.split(separator: ".").count >= 2)
        let accelerators = try await qemu.listedAccelerators()
        #expect(accelerators.contains("tcg"))
        #expect(QEMUBinary.parseVersion("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright") == "7.2.22")
    }

    /// tcg always runs the payload: proves the firmware itself is right.
    @Test func tcgRunsTheProbeGuestToCompletion() async throws {
        let scratch = try TestDirectory(prefix: "hp-probe")
        defer { scratch.remove() }
        let probe = AcceleratorProbe(qemu: qemu, architecture: .amd64, scratchDirectory: scratch.path, deadline: .seconds(20))
        let verdict = await probe.probe(.tcg, qemuVersion: "test", kernelRelease: "test")
        #expect(verdict.usable, "\(verdict.detail)")
        #expect(verdict.detail.contains("cmpxchg16b"))
        #expect(try FileSystem.contents(of: scratch.path).isEmpty, "probe files are cleaned up")
    }

    /// On this host /dev/kvm exists but cannot run a real guest (docs/platform-facts.md): the probe
    /// must say so within its deadline instead of hanging. Where KVM works, it must
    /// say usable. Either way it answers in bounded time.
    @Test func kvmProbeAnswersWithinItsDeadline() async throws {
        let scratch = try TestDirectory(prefix: "hp-probe")
        defer { scratch.remove() }
        let probe = AcceleratorProbe(qemu: qemu, architecture: .amd64, scratchDirectory: scratch.path, deadline: .milliseconds(1500))
        let started = ContinuousClock.now
        let verdict = await probe.probe(.kvm, qemuVersion: "test", kernelRelease: "test")
        let elapsed = ContinuousClock.now - started
        // 1.5 s deadline plus launch and clean-up; generous for a machine loaded by parallel tests.
        #expect(elapsed < .seconds(20), "took \(elapsed)")
        #expect(processes(mentioning: scratch.path).isEmpty, "no probe QEMU (or watchdog) may outlive the probe")
        let kvmModules = (try? FileSystem.contents(of: "/sys/module")) ?? []
        if kvmModules.contains("kvm_pvm") {
            #expect(!verdict.usable, "PVM nested KVM cannot run a stock kernel: \(verdict.detail)")
            // Which stage fails depends on the PVM host (some abort before the first
            // checkpoint, "failed to set MSR"); the verdict must name how far it got.
            #expect(verdict.detail.contains("no checkpoint") || verdict.detail.contains("reached"),
                    "names the last stage reached: \(verdict.detail)")
        }
        if !POSIX.exists("/dev/kvm") {
            #expect(!verdict.usable)
            #expect(verdict.detail.contains("/dev/kvm"))
        }
    }

    @Test func missingDeviceIsUnusableWithoutLaunching() async throws {
        let probe = AcceleratorProbe(qemu: qemu, architecture: .amd64, scratchDirectory: "/nonexistent/never-created", kvmDevice: "/dev/definitely-not-kvm")
        let verdict = await probe.probe(.kvm, qemuVersion: "v", kernelRelease: "k")
        #expect(!verdict.usable)
        #expect(verdict.detail.hasPrefix("cannot open /dev/definitely-not-kvm"))
    }

    @Test func verdictsAreCachedPerQEMUVersionAndKernel() async throws {
        let dir = try TestDirectory(prefix: "hp-cache")
        defer { dir.remove() }
        let cache = AcceleratorVerdictCache(path: dir.file("run/verdicts.json"))
        #expect(cache.verdict(for: .kvm, qemuVersion: "7.2.22", kernelRelease: "6.1") == nil)
        // A probe against a missing device is cached, and the cache answers next time
        // even though the probe would now be different (scratch dir unusable).
        let probe = AcceleratorProbe(qemu: qemu, architecture: .amd64, scratchDirectory: dir.file("scratch"), kvmDevice: "/dev/definitely-not-kvm")
        let first = await probe.kvmVerdict(cache: cache, qemuVersion: "7.2.22", kernelRelease: "6.1")
        #expect(!first.usable)
        try cache.store(AcceleratorVerdict(accelerator: .kvm, usable: true, detail: "worked", qemuVersion: "7.2.22", kernelRelease: "6.2"))
        #expect(cache.verdict(for: .kvm, qemuVersion: "7.2.22", kernelRelease: "6.2")?.usable == true)
        #expect(cache.verdict(for: .kvm, qemuVersion: "7.2.22", kernelRelease: "6.1") == first)
        // The runtime fallback: a boot that died under KVM vetoes it.
        try cache.markUnusable(.kvm, qemuVersion: "7.2.22", kernelRelease: "6.2", reason: "KVM internal error during boot")
        #expect(cache.verdict(for: .kvm, qemuVersion: "7.2.22", kernelRelease: "6.2")?.usable == false)
        #expect(await probe.kvmVerdict(cache: cache, qemuVersion: "7.2.22", kernelRelease: "6.2").detail == "KVM internal error during boot")
        // Garbage in the cache file is ignored, not fatal.
        try AtomicFile(path: cache.path).write(Array("not json".utf8))
        #expect(cache.verdict(for: .kvm, qemuVersion: "7.2.22", kernelRelease: "6.2") == nil)
    }
}

/// Pids whose command line mentions `text`.
func processes(mentioning text: String) -> [String] {
    ((try? FileSystem.contents(of: "/proc")) ?? []).filter { name in
        guard name.allSatisfy(\.isNumber), let raw = try? POSIX.readFile("/proc/\(name)/cmdline", limit: 1 << 20) else { return false }
        return String(decoding: raw.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(text)
    }
}

@Suite struct KVMProbeFirmwareTests {
    /// The assembly the firmware bytes come from. Re-assembling it must give exactly
    /// the bytes embedded in `KVMProbeFirmware` (so the comments there are true).
    static let source = #"""
            .set BASE, 0xF0000
            .code16
    start16:
            cli
            cld
            movw $0xe9, %dx
            movb $'R', %al
            outb %al, %dx
            lgdtl %cs:(gdt_desc - start16)
            movl %cr0, %eax
            orl $1, %eax
            movl %eax, %cr0
            ljmpl $0x08, $(BASE + start32)
            .code32
    start32:
            movw $0x10, %ax
            movw %ax, %ds
            movw %ax, %es
            movw %ax, %ss
            movl $0x9000, %esp
            movb $'P', %al
            outb %al, %dx
            movl $0x1000, %edi
            xorl %eax, %eax
            movl $0xC00, %ecx
            rep stosl
            movl $0x2003, 0x1000
            movl $0x3003, 0x2000
            movl $0x0083, 0x3000
            movl %cr4, %eax
            orl $0x20, %eax
            movl %eax, %cr4
            movl $0x1000, %eax
            movl %eax, %cr3
            movl $0xC0000080, %ecx
            rdmsr
            orl $0x100, %eax
            wrmsr
            movl %cr0, %eax
            orl $0x80000000, %eax
            movl %eax, %cr0
            ljmpl $0x18, $(BASE + start64)
            .code64
    start64:
            movw $0xe9, %dx
            movb $'L', %al
            outb %al, %dx
            movl $0x5000, %edi
            xorl %eax, %eax
            xorl %edx, %edx
            movq %rax, (%rdi)
            movq %rax, 8(%rdi)
            movabsq $0x1111111111111111, %rbx
            movabsq $0x2222222222222222, %rcx
            lock cmpxchg16b (%rdi)
            jnz fail
            cmpq %rbx, (%rdi)
            jne fail
            movw $0xe9, %dx
            movb $'C', %al
            outb %al, %dx
            movb $0x10, %al
            outb %al, $0xf4
    fail:
            movb $0x01, %al
            outb %al, $0xf4
    halt:
            hlt
            jmp halt
            .balign 8, 0
    gdt:
            .quad 0
            .quad 0x00CF9A000000FFFF
            .quad 0x00CF92000000FFFF
            .quad 0x00AF9A000000FFFF
    gdt_end:
    gdt_desc:
            .word gdt_end - gdt - 1
            .long BASE + gdt
            .org 0xFFF0, 0
            .code16
            ljmp $0xF000, $start16
            .org 0x10000, 0
    """#

    @Test func embeddedBytesMatchTheAssemblySource() async throws {
        let which = try await TestShell.output("command -v as && command -v ld")
        guard which.status.isSuccess else {
            Issue.record("binutils (as, ld) are needed to check the firmware bytes")
            return
        }
        let dir = try TestDirectory(prefix: "hp-fw")
        defer { dir.remove() }
        try AtomicFile(path: dir.file("probe.S")).write(Array(Self.source.utf8))
        try await TestShell.run("cd '\(dir.path)' && as --64 -o probe.o probe.S && ld -m elf_x86_64 -Ttext=0 --oformat=binary -o probe.bin probe.o 2>/dev/null")
        let assembled = try POSIX.readFile(dir.file("probe.bin"))
        #expect(assembled.count == KVMProbeFirmware.size)
        #expect(assembled == KVMProbeFirmware.image)
    }
}
