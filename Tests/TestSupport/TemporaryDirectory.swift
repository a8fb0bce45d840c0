import StackCore
import StackProcess
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fresh directory under `$TMPDIR` (or /tmp), removed with everything in it by `remove()`.
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init(prefix: String = "stack-test") throws {
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(base)/\(prefix)-XXXXXX".utf8CString)
        let created: String? = template.withUnsafeMutableBufferPointer { buffer in
            guard mkdtemp(buffer.baseAddress!) != nil else { return nil }
            return String(cString: buffer.baseAddress!)
        }
        guard let created else { throw StackError.systemCall("mkdtemp in \(base)", errno: errno) }
        path = created
    }

    public func file(_ name: String) -> String { Path.join(path, name) }

    /// rm -rf, fixing permissions that tests took away. Blocks briefly (it waits for
    /// rm only, never for another task, so it cannot deadlock the test pool).
    public func remove() {
        let command = Command("/bin/sh", arguments: ["-c", "chmod -R u+rwX \"$0\" 2>/dev/null; rm -rf \"$0\"", path],
                              environment: ["PATH": Command.defaultSearchPath])
        if let child = try? command.spawn() {
            var status: Int32 = 0
            while waitpid(child.pid, &status, 0) < 0 && errno == EINTR {}
        }
    }
}
