import StackCore
import StackRewrite
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The entrypoint's one call: copy-or-in-place, marker handling (§1.2 steps 8–9).
@Suite struct SentinelPreparationTests {
    static func image(_ fixture: Fixture) throws {
        try fixture.write("app/apps/backend/server.js", "api=\"STACK_ENV_VAR_SENTINEL_NEXT_PUBLIC_STACK_API_URL\";pk=\"STACK_ENV_VAR_SENTINEL_NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY\"")
        try fixture.write("app/apps/dashboard/page.html", "<a href=\"STACK_ENV_VAR_SENTINEL_NEXT_PUBLIC_STACK_API_URL\">")
        try fixture.write("app/node_modules/sdk/env.js", "s.startsWith(\"STACK_ENV_VAR_SENTINEL_\")&&STACK_ENV_VAR_SENTINEL_NEXT_PUBLIC_STACK_API_URL")
    }

    /// §1.4-27, §1.4-31, §5.5-13: WORK_DIR = /app ⇒ no copy; sentinels replaced in
    /// place under apps/ only; the marker is written; a second run skips the scan.
    @Test func inPlaceWritesTheMarkerAndTheNextRunSkips() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try Self.image(fixture)
        let configuration = SentinelPreparation.Configuration(imageDirectory: fixture.path("app"), workDirectory: fixture.path("app"),
                                                              values: SentinelValues(["NEXT_PUBLIC_STACK_API_URL": "http://localhost:8102"]))

        let first = try await SentinelPreparation(configuration).run()
        guard case .replacedInPlace(let summary) = first else { Issue.record("expected in place, got \(first)"); return }
        #expect(summary.filesChanged == 2)
        #expect(summary.unresolvedNames == ["NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY"])
        #expect(fixture.exists("app/.stack-sentinels-replaced"))
        #expect(try fixture.text("app/apps/dashboard/page.html") == "<a href=\"http://localhost:8102\">")
        #expect(try fixture.text("app/node_modules/sdk/env.js").hasSuffix("&&STACK_ENV_VAR_SENTINEL_NEXT_PUBLIC_STACK_API_URL"))

        // New values would change the files, but the marker says it was done.
        try fixture.write("app/apps/new.js", "STACK_ENV_VAR_SENTINEL_NEXT_PUBLIC_STACK_API_URL")
        let second = try await SentinelPreparation(configuration).run()
        #expect(second == .alreadyReplaced)
        #expect(try fixture.text("app/apps/new.js") == "STACK_ENV_VAR_SENTINEL_NEXT_PUBLIC_STACK_API_URL")
    }

    /// §1.4-26, §5.4 #35: WORK_DIR ≠ /app ⇒ the tree is copied and substituted on every
    /// start, even when the marker from an earlier start is there; new values win.
    @Test func copyModeRecopiesAndSubstitutesOnEveryStart() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try Self.image(fixture)
        var configuration = SentinelPreparation.Configuration(imageDirectory: fixture.path("app"), workDirectory: fixture.path("runtime/work"),
                                                              values: SentinelValues(["NEXT_PUBLIC_STACK_API_URL": "http://first",
                                                                                      "NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY": "pk1"]))
        let first = try await SentinelPreparation(configuration).run()
        guard case .copied(let summary) = first else { Issue.record("expected a copy, got \(first)"); return }
        #expect(summary.copiedAnything)
        #expect(summary.rewrite.filesChanged == 2)
        #expect(fixture.exists("runtime/work/.stack-sentinels-replaced"))
        #expect(try fixture.text("runtime/work/apps/backend/server.js") == "api=\"http://first\";pk=\"pk1\"")
        // The image itself is never modified, and the SDK outside apps/ is copied verbatim.
        #expect(try fixture.text("app/apps/backend/server.js").contains("STACK_ENV_VAR_SENTINEL_NEXT_PUBLIC_STACK_API_URL"))
        #expect(try fixture.text("runtime/work/node_modules/sdk/env.js") == (try fixture.text("app/node_modules/sdk/env.js")))
        #expect(!fixture.exists("app/.stack-sentinels-replaced"))

        configuration.values = SentinelValues(["NEXT_PUBLIC_STACK_API_URL": "http://second", "NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY": "pk2"])
        let second = try await SentinelPreparation(configuration).run()
        #expect(second.rewrite?.filesChanged == 2)
        #expect(try fixture.text("runtime/work/apps/backend/server.js") == "api=\"http://second\";pk=\"pk2\"")
    }

    /// A work directory reached through a symlink to the image is still "in place".
    @Test func symlinkedWorkDirectoryIsRecognisedAsTheImage() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try Self.image(fixture)
        try fixture.symlink("work", to: fixture.path("app"))
        let configuration = SentinelPreparation.Configuration(imageDirectory: fixture.path("app"), workDirectory: fixture.path("work"),
                                                              values: SentinelValues(["NEXT_PUBLIC_STACK_API_URL": "u"]))
        let outcome = try await SentinelPreparation(configuration).run()
        guard case .replacedInPlace = outcome else { Issue.record("expected in place, got \(outcome)"); return }
        #expect(try fixture.text("app/apps/dashboard/page.html") == "<a href=\"u\">")
    }

    /// §5.4 #36: an image without apps/ (or without any token) is not an error.
    @Test func missingAppsDirectoryIsNotAnError() async throws {
        let fixture = try Fixture()
        defer { fixture.remove() }
        try fixture.write("app/server.js", "x")
        let configuration = SentinelPreparation.Configuration(imageDirectory: fixture.path("app"), workDirectory: fixture.path("app"),
                                                              values: SentinelValues([:]))
        let outcome = try await SentinelPreparation(configuration).run()
        #expect(outcome == .replacedInPlace(outcome.rewrite!))
        #expect(outcome.rewrite?.filesScanned == 0)
        #expect(fixture.exists("app/.stack-sentinels-replaced"))
    }
}
