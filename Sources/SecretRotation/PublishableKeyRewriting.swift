import StackCore

/// The one file-tree operation rotation needs: every occurrence of one publishable key
/// becomes another, in every regular file under a directory (whatever its name, §5.4
/// #28), each file replaced atomically with its mode kept. Flushing to disk is the
/// caller's (`RotationStep.sync`).
public protocol PublishableKeyRewriting: Sendable {
    func replace(_ old: Secret, with new: Secret, under directory: String) async throws -> KeyRewriteResult
}

/// What one pass did.
public struct KeyRewriteResult: Sendable, Equatable {
    public var filesScanned: Int
    public var filesChanged: Int
    public var occurrences: Int

    public init(filesScanned: Int = 0, filesChanged: Int = 0, occurrences: Int = 0) {
        self.filesScanned = filesScanned
        self.filesChanged = filesChanged
        self.occurrences = occurrences
    }

    static func + (lhs: KeyRewriteResult, rhs: KeyRewriteResult) -> KeyRewriteResult {
        KeyRewriteResult(filesScanned: lhs.filesScanned + rhs.filesScanned,
                         filesChanged: lhs.filesChanged + rhs.filesChanged,
                         occurrences: lhs.occurrences + rhs.occurrences)
    }
}
