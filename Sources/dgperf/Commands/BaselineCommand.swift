import ArgumentParser
import DGHarness

/// `dgperf baseline update|path`: committed per-machine baselines for `dgperf compare`.
struct BaselineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baseline",
        abstract: "Manage results/baselines/<machine-fingerprint>.json.",
        subcommands: [Update.self, Path.self]
    )

    struct Update: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a finished run the baseline of the machine that produced it.",
            discussion: "Example: dgperf baseline update results/20250101-120000-host/results.json && git add results/baselines")
        @Argument(help: "results.json (or its directory).") var results: String
        @Option(help: "Baselines directory.") var dir: String = Baseline.defaultDirectory
        func run() throws {
            try reportingHarnessErrors {
                let r = try ResultsStore.load(results)
                let p = try Baseline.update(from: r, source: results, directory: dir)
                print(p)
            }
        }
    }

    struct Path: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the baseline a results file would be compared with (exit 1 if there is none).")
        @Argument(help: "results.json whose machine to look up.") var results: String
        @Option(help: "Baselines directory.") var dir: String = Baseline.defaultDirectory
        func run() throws {
            try reportingHarnessErrors {
                let r = try ResultsStore.load(results)
                guard let sel = Baseline.select(fingerprint: r.environment.fingerprint, directory: dir) else {
                    throw HarnessError(.noInput, "no baseline in '\(dir)' for \(r.environment.fingerprint); create one with `dgperf baseline update \(results)`")
                }
                print(sel.path)
                if !sel.exact { printErr("note: not this machine's baseline (\(r.environment.fingerprint)); compare will use same-run ratios only") }
            }
        }
    }
}
