import StackCore
import StackProcess
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A `docker` CLI stand-in (there is no Docker engine here): put `binDirectory` first on
/// PATH and `docker exec [-e NAME[=VALUE]]… [-i] [-t] CONTAINER CMD ARGS…` runs CMD
/// locally, like docker would inside the container:
///
/// - environment: the container's (`addContainer(environment:)`) plus each `-e NAME`
///   taken from the shim's own environment (omitted when unset there, as docker does)
///   or `-e NAME=VALUE`; nothing else of the caller's environment leaks in;
/// - working directory: the container's `workingDirectory`, if given;
/// - the shim `exec`s CMD, so CMD's exit status is docker's, and no shim process stays;
/// - a container that is not running (or unknown) fails like docker: a message from
///   "the daemon" on stderr and exit status 1, CMD not run.
///
/// Every invocation's arguments are appended to `invocations.log` (tab-separated), so
/// tests can check what the caller put on the command line.
public struct DockerShim: Sendable {
    public let directory: String

    public var binDirectory: String { Path.join(directory, "bin") }
    public var invocationLog: String { Path.join(directory, "invocations.log") }

    private init(directory: String) {
        self.directory = directory
    }

    /// Creates the shim under `parent` (a test's temporary directory).
    public static func create(in parent: String) throws -> DockerShim {
        let shim = DockerShim(directory: Path.join(parent, "docker-shim"))
        try POSIX.makeDirectories(Path.join(shim.directory, "containers"), mode: 0o700)
        try POSIX.makeDirectories(shim.binDirectory, mode: 0o755)
        try AtomicFile(path: Path.join(shim.binDirectory, "docker"), mode: 0o755).write(Array(script.utf8))
        return shim
    }

    /// Defines a container. Values must not contain a newline.
    public func addContainer(_ name: String, environment: [String: String], workingDirectory: String? = nil, running: Bool = true) throws {
        let container = Path.join(Path.join(directory, "containers"), name)
        try POSIX.makeDirectories(container, mode: 0o700)
        let file = EnvFile(entries: environment.keys.sorted().map { EnvFile.Entry(key: $0, value: environment[$0]!) })
        try file.write(to: Path.join(container, "env"), mode: 0o600)
        if let workingDirectory {
            try AtomicFile(path: Path.join(container, "workdir"), mode: 0o600).write(Array(workingDirectory.utf8))
        }
        try setRunning(name, running)
    }

    /// Starts or stops the container (a marker file).
    public func setRunning(_ name: String, _ running: Bool) throws {
        let marker = Path.join(Path.join(Path.join(directory, "containers"), name), "running")
        if running {
            try AtomicFile(path: marker, mode: 0o600).write([])
        } else if unlink(marker) != 0 && errno != ENOENT {
            throw StackError.systemCall("unlink \(marker)", errno: errno)
        }
    }

    /// The argument lists of every `docker` call so far (without argv[0]).
    public func invocations() throws -> [[String]] {
        guard POSIX.exists(invocationLog) else { return [] }
        let text = String(decoding: try POSIX.readFile(invocationLog), as: UTF8.self)
        return text.split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
    }

    /// `PATH` with the shim first.
    public func path(before rest: String = Command.defaultSearchPath) -> String {
        "\(binDirectory):\(rest)"
    }

    static let script = #"""
        #!/usr/bin/python3
        # docker CLI test shim: see Tests/TestSupport/DockerShim.swift.
        import os, sys

        here = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
        with open(os.path.join(here, "invocations.log"), "a") as log:
            log.write("\t".join(sys.argv[1:]) + "\n")

        def usage(message):
            sys.stderr.write("docker (test shim): " + message + "\n")
            sys.exit(125)

        args = sys.argv[1:]
        if not args or args[0] != "exec":
            usage("only 'exec' is implemented")
        args = args[1:]
        extra = {}
        while args and args[0].startswith("-"):
            option = args.pop(0)
            if option in ("-e", "--env"):
                if not args:
                    usage("flag needs an argument: " + option)
                spec = args.pop(0)
                if "=" in spec:
                    name, value = spec.split("=", 1)
                    extra[name] = value
                elif spec in os.environ:
                    extra[spec] = os.environ[spec]
            elif option in ("-i", "--interactive", "-t", "--tty", "-it"):
                pass
            else:
                usage("unsupported option " + option)
        if len(args) < 2:
            usage("\"docker exec\" requires at least 2 arguments")
        container, command = args[0], args[1:]
        state = os.path.join(here, "containers", container)
        if not os.path.isdir(state):
            sys.stderr.write("Error response from daemon: No such container: " + container + "\n")
            sys.exit(1)
        if not os.path.exists(os.path.join(state, "running")):
            sys.stderr.write("Error response from daemon: container " + container + " is not running\n")
            sys.exit(1)
        environment = {}
        with open(os.path.join(state, "env")) as env:
            for line in env.read().split("\n"):
                if line and not line.startswith("#"):
                    name, value = line.split("=", 1)
                    environment[name] = value
        environment.update(extra)
        workdir = os.path.join(state, "workdir")
        if os.path.exists(workdir):
            with open(workdir) as f:
                os.chdir(f.read())
        sys.stdout.flush()
        try:
            os.execvpe(command[0], command, environment)
        except OSError as error:
            sys.stderr.write("OCI runtime exec failed: exec: \"" + command[0] + "\": " + error.strerror + "\n")
            sys.exit(127 if error.errno == 2 else 126)
        """#
}
