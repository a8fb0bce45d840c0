#if canImport(Glibc)
import Glibc
#endif

/// Unbuffered stdout lines (children share the pipe; stdio buffering would reorder).
enum HarnessOutput {
    static func line(_ text: String) {
        var bytes = Array((text + "\n").utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(1, buffer.baseAddress! + offset, buffer.count - offset)
                if n <= 0 { if n < 0 && errno == EINTR { continue }; return }
                offset += n
            }
        }
    }
}
