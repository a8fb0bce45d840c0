import ArgumentParser

/// The parsed subcommand, reduced to what `main` needs.
struct ParsableCommandBox {
    let options: EntrypointOptions
    let isPrepare: Bool

    init(_ command: any ParsableCommand) {
        switch command {
        case let prepare as EntrypointCommand.Prepare:
            options = prepare.options
            isPrepare = true
        case let run as EntrypointCommand.Run:
            options = run.options
            isPrepare = false
        default:
            // `stack-entrypoint --help` and friends never get here: parseAsRoot throws a
            // CleanExit for them, handled by `exit(withError:)`.
            EntrypointCommand.exit(withError: ValidationError("unexpected command"))
        }
    }
}
