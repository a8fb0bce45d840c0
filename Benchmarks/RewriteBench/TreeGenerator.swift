import StackCore
#if canImport(Glibc)
import Glibc
#endif

/// Writes a deterministic tree shaped like a Next.js standalone build installed with
/// pnpm: `node_modules/.pnpm/<pkg>@<ver>/node_modules/<pkg>` plus the symlinks pnpm
/// makes, and `apps/{backend,dashboard}` with `.next` output. About 1 % of the files
/// (all under `apps/`) hold sentinel tokens and the placeholder PCK.
struct TreeGenerator {
    static let placeholderKey = "00000000000000000000000000000000ffffffffffffffffffffffffffffffff"
    /// Names the tokens use; `BenchValues` sets most of them. Pairs share prefixes on purpose.
    static let sentinelNames = [
        "NEXT_PUBLIC_STACK_API_URL", "NEXT_PUBLIC_STACK_API_URL_INTERNAL", "NEXT_PUBLIC_STACK_DASHBOARD_URL",
        "NEXT_PUBLIC_STACK_PROJECT_ID", "NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY", "NEXT_PUBLIC_STACK_PORT_PREFIX",
        "USE_INLINE_ENV_VARS", "NEXT_PUBLIC_STACK_SVIX_SERVER_URL", "NEXT_PUBLIC_BROWSER_STACK_API_URL",
        "NEXT_PUBLIC_SERVER_STACK_API_URL", "NEXT_PUBLIC_STACK_IS_LOCAL_EMULATOR", "NEXT_PUBLIC_POSTHOG_KEY",
        "NEXT_PUBLIC_SENTRY_DSN", "NEXT_PUBLIC_STACK_UNSET_FEATURE",
    ]

    var files = 24_000
    var megabytes = 600
    var seed: UInt64 = 42

    private struct Spec {
        var path: String
        var size: Int
        var binary = false
        var executable = false
        var tokens = false
    }

    private struct Package {
        let name: String
        let version: String
        var id: String { name.replacingSlash(with: "+") + "@" + version }
        var root: String { "node_modules/.pnpm/\(id)/node_modules/\(name)" }
    }

    func generate(into root: String) throws {
        var random = SplitMix64(seed: seed)
        let corpus = Self.makeCorpus(&random, size: 8 << 20)
        var binary = [UInt8](repeating: 0, count: 4 << 20)
        for index in binary.indices { binary[index] = UInt8(truncatingIfNeeded: random.next()) }

        var specs: [Spec] = []
        var links: [(path: String, target: String)] = []

        // node_modules: ~55 % of files.
        let packageCount = max(8, files * 55 / 100 / 32)
        var packages: [Package] = []
        for index in 0..<packageCount {
            let base = Self.word(&random) + (index % 7 == 0 ? "-" + Self.word(&random) : "")
            let name = index % 9 == 0 ? "@\(Self.word(&random))/\(base)" : base
            packages.append(Package(name: name, version: "\(random.below(20)).\(random.below(30)).\(random.below(50))"))
        }
        packages.append(Package(name: "@stackframe/stack", version: "2.8.0"))
        let moduleFiles = files * 55 / 100
        for index in 0..<moduleFiles {
            let package = packages[index % packages.count]
            let directory = ["", "dist/", "dist/esm/", "dist/cjs/", "lib/", "dist/esm/internal/", "types/"][random.below(7)]
            let kind = random.below(100)
            var spec = Spec(path: "", size: Self.sampleSize(&random))
            let stem = Self.word(&random) + "\(index)"
            switch kind {
            case ..<55: spec.path = "\(package.root)/\(directory)\(stem).js"
            case ..<65: spec.path = "\(package.root)/\(directory)\(stem).d.ts"
            case ..<75: spec.path = "\(package.root)/\(directory)\(stem).js.map"
            case ..<80: spec.path = "\(package.root)/\(directory)\(stem).mjs"
            case ..<85: spec.path = "\(package.root)/\(directory)\(stem).cjs"
            case ..<90: spec.path = "\(package.root)/\(directory)\(stem).json"
            case ..<95: spec.path = "\(package.root)/\(directory)README-\(stem).md"
            case ..<96:
                spec.path = "\(package.root)/bin/\(stem).js"
                spec.executable = true
            case ..<97:
                spec.path = "\(package.root)/\(directory)\(stem).node"
                spec.binary = true
                spec.executable = true
            case ..<98:
                spec.path = "\(package.root)/\(directory)\(stem).wasm"
                spec.binary = true
            default:
                spec.path = "\(package.root)/\(directory)\(stem)"
                spec.size = index % 3 == 0 ? 0 : spec.size
            }
            specs.append(spec)
        }
        for package in packages {
            specs.append(Spec(path: "\(package.root)/package.json", size: 600 + random.below(1500)))
            // pnpm: each dependency is a sibling symlink into its own store entry.
            for _ in 0..<random.below(4) {
                let dependency = packages[random.below(packages.count)]
                if dependency.name == package.name { continue }
                let depth = package.name.split(separator: "/").count - 1 + dependency.name.split(separator: "/").count - 1
                let up = String(repeating: "../", count: 2 + depth)
                links.append(("node_modules/.pnpm/\(package.id)/node_modules/\(dependency.name)", "\(up)\(dependency.id)/node_modules/\(dependency.name)"))
            }
        }
        for (index, package) in packages.enumerated() where index % 3 == 0 {
            let up = String(repeating: "../", count: package.name.split(separator: "/").count - 1)
            links.append(("node_modules/\(package.name)", "\(up).pnpm/\(package.id)/node_modules/\(package.name)"))
            for app in ["backend", "dashboard"] where index % 2 == 0 {
                let appUp = String(repeating: "../", count: 3 + package.name.split(separator: "/").count - 1)
                links.append(("apps/\(app)/node_modules/\(package.name)", "\(appUp)node_modules/.pnpm/\(package.id)/node_modules/\(package.name)"))
            }
        }
        let sdk = packages.last!
        specs.append(Spec(path: sdk.root + "/bin/cli.js", size: 300, executable: true))
        links.append(("node_modules/.bin/stack-cli", "../.pnpm/\(sdk.id)/node_modules/\(sdk.name)/bin/cli.js"))
        // The SDK compares against the sentinel prefix; outside apps/ it must stay as is.
        specs.append(Spec(path: sdk.root + "/dist/env.js", size: 4000, tokens: true))

        // apps/: the rest, with the tokens.
        let appFiles = files - specs.count
        let tokenFiles = max(2, files / 100)
        for index in 0..<max(0, appFiles) {
            let app = index % 2 == 0 ? "apps/backend" : "apps/dashboard"
            let stem = Self.word(&random) + "-\(String(random.next() & 0xffff_ffff, radix: 16))"
            let kind = random.below(100)
            var spec = Spec(path: "", size: Self.sampleSize(&random))
            switch kind {
            case ..<40: spec.path = "\(app)/.next/server/chunks/\(index % 97)/\(stem).js"
            case ..<65: spec.path = "\(app)/.next/static/chunks/\(stem).js"
            case ..<75: spec.path = "\(app)/.next/server/app/\(Self.word(&random))/\(Self.word(&random))/page.js"
            case ..<80: spec.path = "\(app)/.next/server/app/\(Self.word(&random))/\(stem).html"
            case ..<85: spec.path = "\(app)/.next/server/app/\(Self.word(&random))/\(stem).rsc"
            case ..<90: spec.path = "\(app)/.next/server/\(stem).json"
            case ..<95: spec.path = "\(app)/.next/static/chunks/\(stem).js.map"
            default:
                spec.path = "\(app)/.next/static/media/\(stem).woff2"
                spec.binary = true
            }
            spec.tokens = !spec.binary && index % max(1, appFiles / tokenFiles) == 0
            specs.append(spec)
        }
        for app in ["backend", "dashboard"] {
            specs.append(Spec(path: "apps/\(app)/server.js", size: 6000, tokens: true))
            specs.append(Spec(path: "apps/\(app)/package.json", size: 400))
            links.append(("apps/\(app)/.next/cache-outside", "/var/tmp"))
            links.append(("apps/\(app)/.next/dangling", "does-not-exist/anywhere"))
        }
        // Big files: streaming matters; one carries tokens across many reads.
        specs.append(Spec(path: "apps/backend/.next/server/chunks/huge-bundle.js", size: 24 << 20, tokens: true))
        specs.append(Spec(path: "node_modules/.pnpm/\(packages[0].id)/node_modules/\(packages[0].name)/dist/engine.wasm", size: 20 << 20, binary: true))

        // Scale sizes to the byte target (fixed seeds keep this deterministic).
        let target = Double(megabytes) * 1_048_576
        let total = Double(specs.reduce(0) { $0 + $1.size })
        let factor = target / max(total, 1)
        for index in specs.indices { specs[index].size = Int(Double(specs[index].size) * factor) }

        try POSIX.makeDirectories(root)
        var createdDirectories = Set<String>()
        func ensureParent(_ relative: String) throws {
            let parent = Path.directory(of: relative)
            guard parent != ".", !createdDirectories.contains(parent) else { return }
            try POSIX.makeDirectories(Path.join(root, parent))
            createdDirectories.insert(parent)
        }
        var written = 0
        var content: [UInt8] = []
        for spec in specs {
            try ensureParent(spec.path)
            let path = Path.join(root, spec.path)
            let fd = try POSIX.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: spec.executable ? 0o755 : 0o644)
            defer { POSIX.close(fd) }
            let source = spec.binary ? binary : corpus
            let start = Int(random.next() % UInt64(source.count))
            content.removeAll(keepingCapacity: true)
            var offset = start
            while content.count < spec.size {
                let take = min(spec.size - content.count, source.count - offset)
                content.append(contentsOf: source[offset..<(offset + take)])
                offset = 0
            }
            if spec.tokens { Self.inject(into: &content, random: &random) }
            try POSIX.writeAll(fd, content, context: path)
            _ = fchmod(fd, spec.executable ? 0o755 : 0o644)
            written += content.count
        }
        for link in links {
            try ensureParent(link.path)
            let path = Path.join(root, link.path)
            if symlink(link.target, path) != 0 && errno != EEXIST {
                throw StackError.systemCall("symlink \(path)", errno: errno)
            }
        }
        print("generated \(specs.count) files (\(written / 1_048_576) MB), \(links.count) symlinks, \(specs.filter(\.tokens).count) files with tokens in \(root)")
    }

    /// Sentinels (some followed by digits or by lowercase, as minified code has them),
    /// the bare prefix, and the placeholder key, at random places.
    private static func inject(into content: inout [UInt8], random: inout SplitMix64) {
        var pieces: [String] = []
        for _ in 0..<(3 + random.below(12)) {
            let name = sentinelNames[random.below(sentinelNames.count)]
            let token = "STACK_ENV_VAR_SENTINEL_" + name
            switch random.below(5) {
            case 0: pieces.append("\"\(token)01\"")
            case 1: pieces.append("`${\"\(token)\"}`")
            default: pieces.append("\"\(token)\"")
            }
        }
        pieces.append("x.startsWith(\"STACK_ENV_VAR_SENTINEL\")")
        pieces.append("\"\(placeholderKey)\"")
        if random.below(2) == 0 { pieces.append("{publishableClientKey:\"\(placeholderKey)\"}") }
        // Descending positions in the original text: no insertion splits an earlier one.
        let positions = pieces.map { _ in content.isEmpty ? 0 : random.below(content.count) }.sorted(by: >)
        for (piece, at) in zip(pieces, positions) {
            content.insert(contentsOf: Array(piece.utf8), at: at)
        }
    }

    private static func sampleSize(_ random: inout SplitMix64) -> Int {
        switch random.below(1000) {
        case ..<5: 0
        case ..<600: 200 + random.below(5_000)
        case ..<900: 5_000 + random.below(25_000)
        case ..<985: 30_000 + random.below(120_000)
        case ..<998: 150_000 + random.below(850_000)
        default: 1_000_000 + random.below(3_000_000)
        }
    }

    private static let syllables = ["ba", "co", "di", "fu", "ga", "he", "ji", "ko", "lu", "ma", "ne", "po", "qu", "ri", "sa", "te", "vi", "wo", "xy", "ze"]

    static func word(_ random: inout SplitMix64) -> String {
        (0..<(2 + random.below(3))).map { _ in syllables[random.below(syllables.count)] }.joined()
    }

    /// Minified-JavaScript-like text without any sentinel or key in it.
    private static func makeCorpus(_ random: inout SplitMix64, size: Int) -> [UInt8] {
        let fragments = ["function ", "return ", "const ", "let ", "var ", "this.", "=>", "{", "}", "(", ")", ";", ",", "\n",
                         "e.exports=", "null", "void 0", "typeof ", "===", "!==", "&&", "||", "?", ":", "\"use strict\";",
                         "Symbol.for(\"react.element\")", "Object.defineProperty(", "__webpack_require__", "Promise.resolve()",
                         "STACK_", "_ENV", "SENTINEL", "ENV_VAR", "process.env.", "NEXT_PUBLIC_", "0x1f", "1e3", "0", "ff"]
        var text: [UInt8] = []
        text.reserveCapacity(size)
        while text.count < size {
            if random.below(4) == 0 {
                text.append(contentsOf: Array(word(&random).utf8))
            } else {
                text.append(contentsOf: Array(fragments[random.below(fragments.count)].utf8))
            }
        }
        text.removeSubrange(size...)
        return text
    }
}

/// Small, fast, deterministic.
struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}

extension String {
    func replacingSlash(with replacement: String) -> String {
        split(separator: "/", omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
