import ArgumentParser

/// The `dgperf` command: thin; each subcommand lives in Commands/ and calls into the library modules.
/// `dgperf --sweep` runs the sweep (default preset) — the product's main command.
@main
struct DGPerf: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dgperf",
        abstract: "Measures whether conditional computation in MLPs pays off on CPUs.",
        discussion: SweepRun.examples,
        version: DGPerfVersion.string,
        subcommands: [GemmCommand.self, SweepCommand.self, TableCommand.self, PlotCommand.self, CompareCommand.self,
                      BaselineCommand.self, MergeCommand.self]
    )

    @Flag(help: "Run the sweep (default preset unless --preset/--spec; see `dgperf sweep --help`).") var sweep = false
    @OptionGroup var options: SweepOptions

    func run() throws {
        guard sweep else { throw CleanExit.helpRequest(self) }
        try SweepRun.run(options)
    }
}

enum DGPerfVersion {
    static let string = "0.1.0"
}
