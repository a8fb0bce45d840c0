/// The shell's argument rule (§4.1): any number of words from the six actions, the last
/// one wins, none means `start`; any other word is a usage error (exit 1). Options
/// (`--json`, `--help`) pass through to the chosen subcommand.
enum ActionWords {
    static let actions = ["start", "stop", "reset", "status", "bench", "capture"]
    static let usage = "Usage: stack-emulator [start|stop|reset|status|bench|capture]"

    enum Parsed: Equatable {
        /// Arguments for the argument parser: the action, then the options.
        case arguments([String])
        /// An unknown word.
        case usageError(String)
    }

    static func parse(_ arguments: [String]) -> Parsed {
        var action: String?
        var options: [String] = []
        for argument in arguments {
            if argument.hasPrefix("-") {
                options.append(argument)
            } else if actions.contains(argument) {
                action = argument
            } else {
                return .usageError(argument)
            }
        }
        // `stack-emulator --help` asks for the overview, not for start's options.
        if action == nil, options.contains(where: { $0 == "--help" || $0 == "-h" }) {
            return .arguments(options)
        }
        return .arguments([action ?? "start"] + options)
    }
}
