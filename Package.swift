// swift-tools-version:6.0
import PackageDescription

let log: Target.Dependency = .product(name: "Logging", package: "swift-log")
let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")

let package = Package(
    name: "stack-emulator",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "stack-entrypoint", targets: ["stack-entrypoint"]),
        .executable(name: "rotate-secrets", targets: ["rotate-secrets"]),
        .executable(name: "trigger-fast-rotate", targets: ["trigger-fast-rotate"]),
        .executable(name: "stack-emulator", targets: ["stack-emulator"]),
        .library(name: "HostOrchestrator", targets: ["HostOrchestrator"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // MARK: C shims and system libraries
        .target(name: "CSystem"),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"]), .brew(["libpq"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"]), .brew(["zstd"])]),

        // MARK: shared by every executable (no QEMU, no Postgres knowledge)
        .target(name: "StackCore", dependencies: ["CSystem", log]),
        .target(name: "StackProcess", dependencies: ["StackCore", "CSystem", log]),
        .target(name: "StackRewrite", dependencies: ["StackCore", "CSystem", log]),

        // MARK: container side
        .target(name: "StackPostgres", dependencies: ["StackCore", "StackProcess", "CLibPQ", log]),
        .target(name: "Supervisord", dependencies: ["StackCore", "StackProcess", log]),
        .target(name: "StackEntrypoint", dependencies: ["StackCore", "StackProcess", "StackRewrite", "StackPostgres", log]),
        .target(name: "SecretRotation", dependencies: ["StackCore", "CSystem", "StackRewrite", "StackPostgres", "Supervisord", log]),

        // MARK: guest side (must not link libpq: the guest has no Postgres client)
        .target(name: "GuestTrigger", dependencies: ["StackCore", "StackProcess", log]),

        // MARK: host side
        .target(name: "ISO9660"),
        .target(name: "Zstd", dependencies: ["CZstd"]),
        .target(name: "QEMUControl", dependencies: ["StackCore", "CSystem", log]),
        .target(name: "HostOrchestrator", dependencies: ["StackCore", "StackProcess", "QEMUControl", "ISO9660", "Zstd", log]),

        // MARK: executables: argument parsing and wiring only
        .executableTarget(name: "stack-entrypoint", dependencies: ["StackEntrypoint", "StackCore", "StackProcess", argumentParser, log]),
        .executableTarget(name: "rotate-secrets", dependencies: ["SecretRotation", "StackCore", argumentParser, log]),
        .executableTarget(name: "trigger-fast-rotate", dependencies: ["GuestTrigger", "StackCore", argumentParser, log]),
        .executableTarget(name: "stack-emulator", dependencies: ["HostOrchestrator", "StackCore", "StackProcess", argumentParser, log]),
        // Benchmarks/rewrite.sh drives it; StackRewriteTests run it as another user.
        .executableTarget(name: "rewrite-bench", dependencies: ["StackRewrite", "StackCore"], path: "Benchmarks/RewriteBench"),

        // MARK: benchmark drivers (run by Benchmarks/*.sh, not shipped)
        .executableTarget(name: "qmp-roundtrip", dependencies: ["QEMUControl"], path: "Benchmarks/qmp-roundtrip"),
        .executableTarget(name: "zstd-bench", dependencies: ["Zstd"], path: "Benchmarks/zstd-bench"),

        // MARK: tests (real processes: PostgreSQL, supervisord, QEMU, qemu-ga, node)
        .target(name: "TestSupport", dependencies: ["StackCore", "StackProcess", "CSystem"], path: "Tests/TestSupport"),
        .testTarget(name: "StackCoreTests", dependencies: ["StackCore", "TestSupport"]),
        .executableTarget(name: "supervisor-harness", dependencies: ["StackProcess", "StackCore", log], path: "Tests/SupervisorHarness"),
        .testTarget(name: "StackProcessTests", dependencies: ["StackProcess", "TestSupport", "supervisor-harness"]),
        .testTarget(name: "StackRewriteTests", dependencies: ["StackRewrite", "TestSupport", "rewrite-bench"]),
        .testTarget(name: "StackPostgresTests", dependencies: ["StackPostgres", "TestSupport", log]),
        .testTarget(name: "SupervisordTests", dependencies: ["Supervisord", "TestSupport"]),
        .testTarget(name: "StackEntrypointTests", dependencies: ["StackEntrypoint", "StackPostgres", "TestSupport", "stack-entrypoint"]),
        .testTarget(name: "SecretRotationTests", dependencies: ["SecretRotation", "Supervisord", "StackPostgres", "TestSupport", "rotate-secrets", "trigger-fast-rotate", "stack-entrypoint"]),
        .testTarget(name: "GuestTriggerTests", dependencies: ["GuestTrigger", "TestSupport"]),
        .testTarget(name: "ISO9660Tests", dependencies: ["ISO9660", "TestSupport"]),
        .testTarget(name: "ZstdTests", dependencies: ["Zstd", "TestSupport"]),
        .testTarget(name: "QEMUControlTests", dependencies: ["QEMUControl", "TestSupport"]),
        .testTarget(name: "HostOrchestratorTests", dependencies: ["HostOrchestrator", "TestSupport", "stack-emulator"]),
    ]
)
