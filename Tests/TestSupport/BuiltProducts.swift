import StackCore
#if canImport(Glibc)
import Glibc
#endif

/// Paths of the package's built executables and of the test fixtures, for tests that
/// run the real binaries (`swift build --build-tests` builds them beside the test bundle).
public enum BuiltProducts {
    /// The directory holding the test bundle and the executables (e.g. `.build/debug`).
    public static let directory: String = {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        precondition(n > 0, "cannot read /proc/self/exe")
        let executable = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // .build/debug/stack-emulatorPackageTests.xctest (a file on Linux).
        return Path.directory(of: executable)
    }()

    public static func path(of product: String) -> String {
        Path.join(directory, product)
    }

    /// `Tests/Fixtures` in the source tree.
    public static let fixtures: String = {
        let thisFile = #filePath  // …/Tests/TestSupport/BuiltProducts.swift
        return Path.join(Path.directory(of: Path.directory(of: thisFile)), "Fixtures")
    }()
}
