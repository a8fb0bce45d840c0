import StackCore
import StackProcess
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension StackError.Code {
    /// The demo guest is neither built nor buildable here (see the message for why).
    public static let demoGuestUnavailable = StackError.Code("demo-guest-unavailable")
}

/// The tiny demo VM built by `guest/build-demo-guest`: a Debian kernel and a busybox
/// initramfs that speak the real guest's contract (QGA on `org.qemu.guest_agent.0`,
/// `trigger-fast-rotate`, `mount-host-fs`, the four HTTP endpoints on the STACKCFG port
/// prefix). See guest/README.md.
///
/// Boot it with `-kernel kernel -initrd initrd -append kernelCommandLine` and attach
/// `baseImage` (through a qcow2 overlay) as the first virtio disk.
public struct DemoGuest: Sendable {
    /// Points at a prebuilt guest directory; when set, nothing is built.
    public static let directoryVariable = "STACK_DEMO_GUEST_DIR"

    /// The directory holding the five build outputs.
    public let directory: String
    /// The kernel command line the guest was built for (from `cmdline`).
    public let kernelCommandLine: String

    /// Uncompressed ELF kernel; QEMU boots it through its PVH entry point.
    public var kernel: String { Path.join(directory, "vmlinux") }
    public var initrd: String { Path.join(directory, "initrd.img") }
    /// Empty qcow2 the QEMU layouts attach as `disk.qcow2`'s backing file.
    public var baseImage: String { Path.join(directory, "base.qcow2") }
    /// What went in: kernel package, busybox/qemu-ga versions, rotation binaries, sizes.
    public var manifest: String { Path.join(directory, "manifest.txt") }

    static let outputs = ["vmlinux", "initrd.img", "cmdline", "base.qcow2", "manifest.txt"]

    /// Opens a built guest; throws if any output is missing.
    public init(directory: String) throws {
        for name in DemoGuest.outputs {
            var status = stat()
            guard stat(Path.join(directory, name), &status) == 0, status.st_size > 0 else {
                throw StackError(.demoGuestUnavailable,
                                 "demo guest in \(directory) lacks \(name): build it with guest/build-demo-guest --out \(directory)")
            }
        }
        self.directory = directory
        let commandLine = try POSIX.readFile(Path.join(directory, "cmdline"))
        // One line; the trailing newline is not part of it.
        self.kernelCommandLine = String(decoding: commandLine, as: UTF8.self)
            .split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? ""
    }

    /// The package's root directory, from this file's location (Tests/TestSupport/…).
    public static func repositoryRoot(filePath: String = #filePath) -> String {
        var path = filePath
        for _ in 0..<3 { path = Path.directory(of: path) }
        return path
    }

    public static var buildScript: String { Path.join(repositoryRoot(), "guest/build-demo-guest") }
    /// `<repo>/.build-guest` (gitignored).
    public static var defaultDirectory: String { Path.join(repositoryRoot(), ".build-guest") }

    /// How to build: where, and which rotation binaries replace the shell stand-ins.
    public struct BuildOptions: Sendable {
        public var outputDirectory: String
        /// Installed as `/usr/local/bin/trigger-fast-rotate` with its shared libraries.
        public var trigger: String?
        /// Installed as `/usr/local/bin/rotate-secrets` with its shared libraries.
        public var rotate: String?
        /// A first build downloads and unpacks a kernel package: minutes on a busy machine.
        public var timeout: Duration

        /// Builds with real binaries belong in their own directory: sharing one with the
        /// stand-in build would make the two rebuild each other's outputs back and forth.
        public init(outputDirectory: String = DemoGuest.defaultDirectory, trigger: String? = nil,
                    rotate: String? = nil, timeout: Duration = .seconds(1200)) {
            self.outputDirectory = outputDirectory
            self.trigger = trigger
            self.rotate = rotate
            self.timeout = timeout
        }
    }

    /// The prebuilt guest named by `STACK_DEMO_GUEST_DIR` if that is set, else the guest in
    /// `options.outputDirectory` after running the build script, which returns in well under
    /// a second when nothing changed. The first build needs network access (apt-get download
    /// of the kernel package); a failure is one error saying so, with the script's last lines.
    public static func ensureBuilt(_ options: BuildOptions = BuildOptions(),
                                   environment: [String: String] = ProcessEnvironment.current) async throws -> DemoGuest {
        if let prebuilt = environment[directoryVariable], !prebuilt.isEmpty {
            do {
                return try DemoGuest(directory: prebuilt)
            } catch let error as StackError {
                throw StackError(.demoGuestUnavailable, "\(directoryVariable)=\(prebuilt): \(error.message) (or unset \(directoryVariable))")
            }
        }
        var arguments = [buildScript, "--out", options.outputDirectory]
        if let trigger = options.trigger { arguments += ["--trigger", trigger] }
        if let rotate = options.rotate { arguments += ["--rotate", rotate] }
        let output: CommandOutput
        do {
            output = try await Command("/bin/bash", arguments: arguments, environment: environment)
                .run(timeout: options.timeout)
        } catch {
            throw StackError(.demoGuestUnavailable, "guest/build-demo-guest did not finish: \(error)")
        }
        guard output.status.isSuccess else {
            let log = output.standardErrorText
            let tail = log.split(separator: "\n").suffix(4).joined(separator: " | ")
            let hint = log.contains("apt-get") ? " (the first build downloads the kernel package: it needs network access to the Debian archive)" : ""
            throw StackError(.demoGuestUnavailable,
                             "guest/build-demo-guest failed (\(output.status)): \(tail)\(hint); run it by hand for the full log")
        }
        return try DemoGuest(directory: options.outputDirectory)
    }
}
