import StackCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What `stack-emulator` tells its user (§4.1): `[emulator]`-prefixed lines, log/info/
/// warn to stdout and errors to stderr, coloured (green, cyan, yellow, red) only when
/// the stream is a terminal; progress bars and waiting counters redraw one line on a
/// terminal and become occasional plain lines otherwise.
///
/// The executable decides where lines go (`standard(...)`); tests collect them
/// (`collecting()`), and `bench` silences the implicit `stop` (`muted`). Safe to use
/// from any thread (compression threads report progress through it).
public final class EmulatorConsole: Sendable {
    public enum Level: String, Sendable {
        case log, info, warn, error
    }

    /// One output stream: where bytes go and whether it is a terminal.
    public struct Stream: Sendable {
        public var write: @Sendable ([UInt8]) -> Void
        public var isTerminal: Bool

        public init(isTerminal: Bool, write: @escaping @Sendable ([UInt8]) -> Void) {
            self.isTerminal = isTerminal
            self.write = write
        }

        /// A file descriptor (1 or 2), a terminal when `isatty` says so.
        public static func descriptor(_ fd: Int32) -> Stream {
            Stream(isTerminal: isatty(fd) == 1) { bytes in
                try? POSIX.writeAll(fd, bytes, context: "write to fd \(fd)")
            }
        }

        public static let discard = Stream(isTerminal: false) { _ in }
    }

    private struct State {
        var muted = false
        /// A progress or waiting line is on screen without its newline.
        var openLine = false
        var lastDraw: ContinuousClock.Instant?
        var lastPlainProgress: ContinuousClock.Instant?
        var collected: [(Level, String)] = []
    }

    public let output: Stream
    public let errors: Stream
    private let collect: Bool
    private let state = Mutex(State())

    public static let prefix = "[emulator]"

    public init(output: Stream, errors: Stream, collect: Bool = false) {
        self.output = output
        self.errors = errors
        self.collect = collect
    }

    /// stdout and stderr of this process.
    public static func standard() -> EmulatorConsole {
        EmulatorConsole(output: .descriptor(1), errors: .descriptor(2))
    }

    /// Prints nothing, keeps every line (for tests and for `bench --json`).
    public static func collecting() -> EmulatorConsole {
        EmulatorConsole(output: .discard, errors: .discard, collect: true)
    }

    /// Lines so far, as `level text` (collecting consoles only).
    public var lines: [(level: Level, text: String)] {
        state.withLock { $0.collected.map { (level: $0.0, text: $0.1) } }
    }

    /// While muted nothing is printed (bench's implicit stop).
    public func setMuted(_ muted: Bool) {
        state.withLock { $0.muted = muted }
    }

    public func log(_ text: String) { emit(.log, text) }
    public func info(_ text: String) { emit(.info, text) }
    public func warn(_ text: String) { emit(.warn, text) }
    public func error(_ text: String) { emit(.error, text) }

    /// Plain text without prefix (the `status` table, bench's JSON).
    public func plain(_ text: String) {
        let muted = state.withLock { state -> Bool in
            if collect { state.collected.append((.log, text)) }
            return state.muted
        }
        guard !muted else { return }
        closeOpenLine(on: output)
        output.write(Array((text + "\n").utf8))
    }

    public func emit(_ level: Level, _ text: String) {
        let muted = state.withLock { state -> Bool in
            if collect { state.collected.append((level, text)) }
            return state.muted
        }
        guard !muted else { return }
        let stream = level == .error ? errors : output
        closeOpenLine(on: output)
        stream.write(Array((render(level, text, colour: stream.isTerminal) + "\n").utf8))
    }

    func render(_ level: Level, _ text: String, colour: Bool) -> String {
        guard colour else { return "\(EmulatorConsole.prefix) \(text)" }
        let code = switch level {
        case .log: "\u{1B}[0;32m"
        case .info: "\u{1B}[0;36m"
        case .warn: "\u{1B}[0;33m"
        case .error: "\u{1B}[0;31m"
        }
        return "\(code)\(EmulatorConsole.prefix)\u{1B}[0m \(text)"
    }

    // MARK: progress

    /// A transfer's progress: a redrawn bar on a terminal (at most every 100 ms), else a
    /// plain line at most every 5 s. Call `finishProgress` when done.
    public func progress(_ label: String, done: Int64, total: Int64?) {
        let now = ContinuousClock.now
        let line: String? = state.withLock { state in
            guard !state.muted else { return nil }
            if output.isTerminal {
                if let last = state.lastDraw, now - last < .milliseconds(100) { return nil }
                state.lastDraw = now
                state.openLine = true
                return "\r" + EmulatorConsole.progressLine(label, done: done, total: total) + "\u{1B}[K"
            }
            if let last = state.lastPlainProgress, now - last < .seconds(5) { return nil }
            if state.lastPlainProgress == nil { state.lastPlainProgress = now; return nil }
            state.lastPlainProgress = now
            return "\(EmulatorConsole.prefix) " + EmulatorConsole.progressLine(label, done: done, total: total) + "\n"
        }
        if let line { output.write(Array(line.utf8)) }
    }

    /// A wait's elapsed time (`  [3.2s] Waiting for services...`), on terminals only.
    public func waiting(_ label: String, elapsed: Duration) {
        guard output.isTerminal else { return }
        let now = ContinuousClock.now
        let draw = state.withLock { state -> Bool in
            guard !state.muted else { return false }
            if let last = state.lastDraw, now - last < .milliseconds(100) { return false }
            state.lastDraw = now
            state.openLine = true
            return true
        }
        if draw { output.write(Array("\r  [\(Seconds.format(elapsed))] \(label)...\u{1B}[K".utf8)) }
    }

    /// Ends a progress or waiting line (the next line starts on a fresh row).
    public func finishProgress() {
        closeOpenLine(on: output)
        state.withLock {
            $0.lastDraw = nil
            $0.lastPlainProgress = nil
        }
    }

    private func closeOpenLine(on stream: Stream) {
        let wasOpen = state.withLock { state -> Bool in
            defer { state.openLine = false }
            return state.openLine
        }
        if wasOpen { stream.write(Array("\n".utf8)) }
    }

    /// `label [#########.........] 45% 30.1/67.0 MiB`.
    static func progressLine(_ label: String, done: Int64, total: Int64?) -> String {
        guard let total, total > 0 else { return "\(label) \(ByteCount.format(done))" }
        let fraction = min(1, max(0, Double(done) / Double(total)))
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        return "\(label) [\(bar)] \(Int(fraction * 100))% \(ByteCount.format(done))/\(ByteCount.format(total))"
    }
}

/// Human sizes, 1024 steps (`67.3 MiB`).
public enum ByteCount {
    public static func format(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(bytes) B" }
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) \(units[unit])"
    }
}
