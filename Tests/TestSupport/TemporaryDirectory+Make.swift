import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension TemporaryDirectory {
    /// Like `init(prefix:)`, but reads the mkdtemp result while the buffer is alive.
    /// (`init(prefix:)` builds its String from a pointer that escaped
    /// `withUnsafeBufferPointer` of a temporary array, which reads freed memory and
    /// crashes intermittently with "UnsafeMutablePointer.initialize overlapping range".)
    public static func make(prefix: String = "stack-test") throws -> TemporaryDirectory {
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(base)/\(prefix)-XXXXXX".utf8CString)
        let path = try template.withUnsafeMutableBufferPointer { buffer -> String in
            guard mkdtemp(buffer.baseAddress!) != nil else { throw StackError.systemCall("mkdtemp in \(base)", errno: errno) }
            return String(cString: buffer.baseAddress!)
        }
        return TemporaryDirectory(existingPath: path)
    }

    init(existingPath: String) {
        self.path = existingPath
    }
}
