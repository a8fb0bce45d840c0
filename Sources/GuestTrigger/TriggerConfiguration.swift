/// How `trigger-fast-rotate` reaches rotate-secrets in the container.
public struct TriggerConfiguration: Sendable {
    /// The container runtime's CLI (`docker`, `podman`): a name looked up in PATH, or a path.
    public var runtime: String
    /// The container that runs the stack (§3.2: `stack`).
    public var container: String
    /// rotate-secrets' path inside the container.
    public var rotateCommand: String
    /// Most bytes accepted on stdin; the real payload is about 330.
    public var inputLimit: Int

    public init(runtime: String = "docker", container: String = "stack",
                rotateCommand: String = "/usr/local/bin/rotate-secrets", inputLimit: Int = 64 * 1024) {
        self.runtime = runtime
        self.container = container
        self.rotateCommand = rotateCommand
        self.inputLimit = inputLimit
    }
}
