import ArgumentParser

@main
struct EntrypointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stack-entrypoint")
    func run() throws { throw ValidationError("not wired yet") }
}
