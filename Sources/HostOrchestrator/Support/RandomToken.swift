import CSystem
import StackCore

/// Short random hex names for temporary files and snapshot ids (not secrets).
enum RandomToken {
    static func hex(bytes count: Int) -> String {
        var bytes = [UInt8](repeating: 0, count: count)
        let rc = bytes.withUnsafeMutableBytes { cs_getrandom($0.baseAddress, $0.count) }
        precondition(rc == 0, "getrandom failed: \(StackError.describe(errno: -rc))")
        return Hex.encode(bytes)
    }
}
