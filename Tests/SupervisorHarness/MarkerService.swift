import StackProcess

/// A `Service` that reports its start and its stop on stdout, so tests can see that the
/// supervisor runs in-process services and cancels them at shutdown.
struct MarkerService: Service {
    struct Failure: Error, CustomStringConvertible { var description: String { "marker service failed on purpose" } }

    let name: String
    let fails: Bool

    func run() async throws {
        HarnessOutput.line("service:\(name):started")
        if fails { throw Failure() }
        do {
            try await Task.sleep(for: .seconds(3600))
        } catch {
            HarnessOutput.line("service:\(name):stopped")
            throw error
        }
    }
}
