import ArgumentParser

@main
struct RotateSecretsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rotate-secrets")
    func run() throws { throw ValidationError("not wired yet") }
}
