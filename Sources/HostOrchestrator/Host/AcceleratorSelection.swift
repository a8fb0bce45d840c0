extension AcceleratorPolicy {
    /// The accelerator for `configuration` on `host`, wired to the real evidence: QEMU's
    /// `-accel help` for hvf, the cached or freshly run KVM probe (RUN_DIR) for kvm.
    public static func choose(for configuration: EmulatorConfiguration, host: HostPlatform, qemu: QEMUBinary,
                              qemuVersion: String, probeDeadline: Duration = .milliseconds(1500)) async -> AcceleratorChoice {
        let paths = configuration.paths
        return await choose(
            guest: configuration.architecture, host: host, override: configuration.acceleratorOverride,
            hvfListed: { (try? await qemu.listedAccelerators())?.contains("hvf") ?? false },
            kvmVerdict: {
                let probe = AcceleratorProbe(qemu: qemu, architecture: configuration.architecture,
                                             scratchDirectory: paths.probeDirectory, deadline: probeDeadline)
                return await probe.kvmVerdict(cache: AcceleratorVerdictCache(path: paths.acceleratorVerdicts),
                                              qemuVersion: qemuVersion, kernelRelease: host.kernelRelease)
            })
    }
}
