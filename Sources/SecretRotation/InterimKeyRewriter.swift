import StackCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Stand-in for StackRewrite's literal mode until it lands on main: whole-file reads,
/// a naive search, atomic replace (fsynced by AtomicFile) with the mode kept. Replaced by
/// `StackRewriteKeyRewriter` (same contract) once the engine is available.
struct InterimKeyRewriter: PublishableKeyRewriting {
    func replace(_ old: Secret, with new: Secret, under directory: String) async throws -> KeyRewriteResult {
        let search = Array(old.unredacted.utf8)
        let replacement = Array(new.unredacted.utf8)
        var result = KeyRewriteResult()
        try walk(directory, search: search, replacement: replacement, result: &result)
        return result
    }

    private func walk(_ directory: String, search: [UInt8], replacement: [UInt8], result: inout KeyRewriteResult) throws {
        guard let dir = opendir(directory) else {
            throw RotationError(.rewrite, "open directory \(directory): \(StackError.describe(errno: errno))", errno: errno)
        }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(dir)
        for name in names {
            let path = Path.join(directory, name)
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFDIR: try walk(path, search: search, replacement: replacement, result: &result)
            case S_IFREG: try rewrite(path, mode: st.st_mode & 0o7777, search: search, replacement: replacement, result: &result)
            default: continue
            }
        }
    }

    private func rewrite(_ path: String, mode: mode_t, search: [UInt8], replacement: [UInt8], result: inout KeyRewriteResult) throws {
        let content: [UInt8]
        do { content = try POSIX.readFile(path, limit: Int.max) } catch {
            throw RotationError(.rewrite, "read \(path)", underlying: error)
        }
        result.filesScanned += 1
        var output: [UInt8] = []
        var count = 0
        var start = 0
        let first = search[0]
        var index = 0
        while index + search.count <= content.count {
            if content[index] == first && content[index..<(index + search.count)].elementsEqual(search) {
                output.append(contentsOf: content[start..<index])
                output.append(contentsOf: replacement)
                index += search.count
                start = index
                count += 1
            } else {
                index += 1
            }
        }
        guard count > 0 else { return }
        output.append(contentsOf: content[start...])
        do { try AtomicFile(path: path, mode: mode).write(output) } catch {
            throw RotationError(.rewrite, "replace \(path)", underlying: error)
        }
        result.filesChanged += 1
        result.occurrences += count
    }
}
