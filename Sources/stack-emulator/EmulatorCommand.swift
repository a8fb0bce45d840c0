import ArgumentParser

@main
struct EmulatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stack-emulator")
    func run() throws { throw ValidationError("not wired yet") }
}
