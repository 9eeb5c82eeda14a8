import ArgumentParser
import Glibc

extension DGPerf {
    /// Entry point: on bad input print one line naming the problem (no usage dump) and exit non-zero;
    /// help and version requests print as usual.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            let message = self.message(for: error)
            if !message.isEmpty {
                let args = CommandLine.arguments.dropFirst()
                let known = Set(configuration.subcommands.map { $0._commandName })
                let sub = args.first.map { known.contains($0) ? " \($0)" : "" } ?? ""
                printErr("error: \(message)" + (code == .validationFailure ? " (see 'dgperf\(sub) --help')" : ""))
            }
            Glibc.exit(code.rawValue)
        }
    }
}
