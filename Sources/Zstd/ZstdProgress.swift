/// Bytes consumed and produced so far by one (de)compression.
public struct ZstdProgress: Sendable, Equatable {
    public var bytesIn: UInt64
    public var bytesOut: UInt64

    public init(bytesIn: UInt64 = 0, bytesOut: UInt64 = 0) {
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
    }
}

/// What a finished (de)compression did.
public struct ZstdTransfer: Sendable, Equatable {
    public var bytesIn: UInt64
    public var bytesOut: UInt64
    /// Compression: worker threads libzstd actually used (0 = on the calling thread,
    /// also when the library was built without multithreading).
    public var workers: Int
    /// Sparse decompression: bytes left as holes instead of written.
    public var holeBytes: UInt64

    public init(bytesIn: UInt64, bytesOut: UInt64, workers: Int = 0, holeBytes: UInt64 = 0) {
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
        self.workers = workers
        self.holeBytes = holeBytes
    }
}

/// Calls the caller's progress handler at most once per `interval` (plus once at the
/// end), so a 4 GiB stream does not flood logs. The handler may throw to abort.
struct ProgressThrottle {
    let interval: Duration
    let handler: ((ZstdProgress) throws -> Void)?
    private var lastReport = ContinuousClock.now

    init(interval: Duration, handler: ((ZstdProgress) throws -> Void)?) {
        self.interval = interval
        self.handler = handler
    }

    mutating func update(_ progress: ZstdProgress) throws {
        guard let handler else { return }
        let now = ContinuousClock.now
        guard now - lastReport >= interval else { return }
        lastReport = now
        try handler(progress)
    }

    func finish(_ progress: ZstdProgress) throws {
        try handler?(progress)
    }
}
