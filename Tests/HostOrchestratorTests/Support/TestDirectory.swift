import CSystem
import StackCore
#if canImport(Glibc)
import Glibc
#endif

/// A fresh directory under /tmp (or `base`), removed by `remove()`. Used instead of
/// TestSupport.TemporaryDirectory, whose initializer builds its path from a pointer
/// that escapes `withUnsafeBufferPointer` (a dangling read that crashed the test
/// process now and then); reported rather than edited here.
struct TestDirectory: Sendable {
    let path: String

    init(prefix: String, base: String = "/tmp") throws {
        var template = Array("\(base)/\(prefix)-XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let result = mkdtemp(buffer.baseAddress!) else { return nil }
            return String(cString: result)
        }
        guard let created else { throw StackError.systemCall("mkdtemp \(base)/\(prefix)-XXXXXX", errno: errno) }
        path = created
    }

    /// An existing directory (to remove it later).
    init(unchecked path: String) {
        self.path = path
    }

    func file(_ name: String) -> String { Path.join(path, name) }

    /// rm -rf.
    func remove() {
        _ = cs_remove_tree(path)
    }
}
