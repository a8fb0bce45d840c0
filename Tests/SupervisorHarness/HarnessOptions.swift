/// Command line of the test harness (no ArgumentParser: parsing must stay synchronous
/// and thread-free, because `SignalSource.install()` runs right after it).
///
///     supervisor-harness supervise [--grace-ms N] [--kill-timeout-ms N] [--log-level L]
///         [--no-subreaper] [--prepare SCRIPT [--prepare-uncancellable]]
///         [--service NAME [--service-fails]] [--exit-with-stdin] --child NAME=SCRIPT...
///     supervisor-harness reap-concurrently [--orphans N] [--unregistered SCRIPT] --command NAME=SCRIPT...
struct HarnessOptions {
    enum Mode: String { case supervise, reapConcurrently = "reap-concurrently" }

    var mode: Mode = .supervise
    var graceMilliseconds = 10_000
    var killTimeoutMilliseconds = 2_000
    var logLevel = "info"
    var becomeSubreaper = true
    var prepare: String?
    var prepareCancellable = true
    var service: String?
    var serviceFails = false
    var children: [(name: String, script: String)] = []
    var orphans = 0
    var unregistered: String?
    var exitWithStdin = false

    struct UsageError: Error, CustomStringConvertible { let description: String }

    init(_ arguments: [String]) throws {
        var rest = arguments[...]
        guard let first = rest.popFirst(), let mode = Mode(rawValue: first) else {
            throw UsageError(description: "first argument must be 'supervise' or 'reap-concurrently'")
        }
        self.mode = mode
        func value(_ flag: String) throws -> String {
            guard let value = rest.popFirst() else { throw UsageError(description: "\(flag) needs a value") }
            return value
        }
        func number(_ flag: String) throws -> Int {
            guard let number = Int(try value(flag)), number >= 0 else { throw UsageError(description: "\(flag) needs a non-negative integer") }
            return number
        }
        func named(_ flag: String) throws -> (String, String) {
            let pair = try value(flag)
            guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
                throw UsageError(description: "\(flag) needs NAME=SCRIPT")
            }
            return (String(pair[..<equals]), String(pair[pair.index(after: equals)...]))
        }
        while let flag = rest.popFirst() {
            switch flag {
            case "--grace-ms": graceMilliseconds = try number(flag)
            case "--kill-timeout-ms": killTimeoutMilliseconds = try number(flag)
            case "--log-level": logLevel = try value(flag)
            case "--no-subreaper": becomeSubreaper = false
            case "--prepare": prepare = try value(flag)
            case "--prepare-uncancellable": prepareCancellable = false
            case "--service": service = try value(flag)
            case "--service-fails": serviceFails = true
            case "--child", "--command": children.append(try named(flag))
            case "--orphans": orphans = try number(flag)
            case "--unregistered": unregistered = try value(flag)
            case "--exit-with-stdin": exitWithStdin = true
            default: throw UsageError(description: "unknown argument \(flag)")
            }
        }
    }
}
