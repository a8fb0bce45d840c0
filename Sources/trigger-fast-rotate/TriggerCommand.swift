import ArgumentParser

@main
struct TriggerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "trigger-fast-rotate")
    func run() throws { throw ValidationError("not wired yet") }
}
