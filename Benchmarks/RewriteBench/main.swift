// rewrite-bench: drives StackRewrite on big trees for Benchmarks/rewrite.sh (timings are
// taken by the script, against baselines run in the same session), and serves as a
// small CLI for tests that must run the rewriter as another user.
import StackCore
import StackRewrite
#if canImport(Glibc)
import Glibc
#endif

/// Values for the generator's sentinel names: special bytes on purpose; two names unset.
let benchValues: [String: String] = [
    "NEXT_PUBLIC_STACK_API_URL": "http://localhost:8102",
    "NEXT_PUBLIC_STACK_API_URL_INTERNAL": "http://127.0.0.1:8102/a&b|c\\d",
    "NEXT_PUBLIC_STACK_DASHBOARD_URL": "http://localhost:8101",
    "NEXT_PUBLIC_STACK_PROJECT_ID": "internal",
    "NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY": TreeGeneratorKey.placeholder,
    "NEXT_PUBLIC_STACK_PORT_PREFIX": "81",
    "USE_INLINE_ENV_VARS": "true",
    "NEXT_PUBLIC_STACK_SVIX_SERVER_URL": "http://localhost:8113",
    "NEXT_PUBLIC_BROWSER_STACK_API_URL": "http://localhost:8102",
    "NEXT_PUBLIC_SERVER_STACK_API_URL": "http://localhost:8102",
    "NEXT_PUBLIC_STACK_IS_LOCAL_EMULATOR": "true",
    "NEXT_PUBLIC_POSTHOG_KEY": "",
]

enum TreeGeneratorKey { static let placeholder = TreeGenerator.placeholderKey }

struct Arguments {
    var positional: [String] = []
    var flags: [String: String] = [:]

    init(_ raw: ArraySlice<String>) {
        var iterator = raw.makeIterator()
        while let argument = iterator.next() {
            if argument.hasPrefix("--") {
                flags[String(argument.dropFirst(2))] = iterator.next() ?? ""
            } else {
                positional.append(argument)
            }
        }
    }

    func int(_ name: String) -> Int? { flags[name].flatMap { Int($0) } }
}

func options(_ arguments: Arguments) -> RewriteOptions {
    var options = RewriteOptions()
    if let workers = arguments.int("workers") { options.workers = workers }
    if let kilobytes = arguments.int("buffer-kb") { options.bufferSize = kilobytes * 1024 }

    switch arguments.flags["durability"] {
    case "sync-at-end": options.durability = .syncFileSystemAtEnd
    case "fsync-each": options.durability = .fsyncEachFile
    default: break
    }
    return options
}

func peakMemoryKilobytes() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss
}

func printError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}

func usage() -> Never {
    let text = """
    usage: rewrite-bench generate <dir> [--files N] [--megabytes M] [--seed S]
           rewrite-bench prepare <source> <destination> [--scope apps] [--workers N] [--buffer-kb K]
           rewrite-bench copy <source> <destination> [--workers N]
           rewrite-bench sentinels <dir> [--workers N] [--buffer-kb K]   (values: this process's environment)
           rewrite-bench literal <dir> <search> <replacement> [--workers N] [--buffer-kb K] [--durability sync-at-end|fsync-each]

    """
    printError(text)
    exit(2)
}

let arguments = Arguments(CommandLine.arguments.dropFirst(2))
guard CommandLine.arguments.count >= 2 else { usage() }
do {
    switch CommandLine.arguments[1] {
    case "generate":
        guard arguments.positional.count == 1 else { usage() }
        var generator = TreeGenerator()
        if let files = arguments.int("files") { generator.files = files }
        if let megabytes = arguments.int("megabytes") { generator.megabytes = megabytes }
        if let seed = arguments.int("seed") { generator.seed = UInt64(seed) }
        try generator.generate(into: arguments.positional[0])
    case "prepare":
        guard arguments.positional.count == 2 else { usage() }
        let summary = try TreeCopier(options: options(arguments)).copy(
            from: arguments.positional[0], to: arguments.positional[1],
            rewriting: .sentinels(SentinelValues(benchValues)), within: arguments.flags["scope"] ?? "apps")
        print("prepare: \(summary) unresolved=\(summary.rewrite.unresolvedNames) maxrss_kb=\(peakMemoryKilobytes())")
    case "copy":
        guard arguments.positional.count == 2 else { usage() }
        let summary = try TreeCopier(options: options(arguments)).copy(from: arguments.positional[0], to: arguments.positional[1])
        print("copy: \(summary) maxrss_kb=\(peakMemoryKilobytes())")
    case "sentinels":
        guard arguments.positional.count == 1 else { usage() }
        let summary = try TreeRewriter(rule: .sentinels(SentinelValues(ProcessEnvironment.current)), options: options(arguments))
            .rewrite(directory: arguments.positional[0])
        print("sentinels: \(summary) maxrss_kb=\(peakMemoryKilobytes())")
    case "literal":
        guard arguments.positional.count == 3 else { usage() }
        let summary = try TreeRewriter(rule: .literal(arguments.positional[1], arguments.positional[2]), options: options(arguments))
            .rewrite(directory: arguments.positional[0])
        print("literal: \(summary) maxrss_kb=\(peakMemoryKilobytes())")
    default:
        usage()
    }
} catch {
    printError("rewrite-bench: \(error)\n")
    exit(1)
}
