/// Whether an accelerator really runs a guest on this host, as measured by
/// `AcceleratorProbe` or learned from a launch that died under it.
public struct AcceleratorVerdict: Sendable, Codable, Equatable {
    public var accelerator: Accelerator
    public var usable: Bool
    /// One line: what was observed (stages reached, time taken, QEMU's complaint).
    public var detail: String
    /// The verdict holds for this QEMU and this kernel only.
    public var qemuVersion: String
    public var kernelRelease: String

    public init(accelerator: Accelerator, usable: Bool, detail: String, qemuVersion: String, kernelRelease: String) {
        self.accelerator = accelerator
        self.usable = usable
        self.detail = detail
        self.qemuVersion = qemuVersion
        self.kernelRelease = kernelRelease
    }

    func hasKey(accelerator: Accelerator, qemuVersion: String, kernelRelease: String) -> Bool {
        self.accelerator == accelerator && self.qemuVersion == qemuVersion && self.kernelRelease == kernelRelease
    }
}
