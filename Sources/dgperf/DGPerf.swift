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
        subcommands: [
            SweepCommand.self, TableCommand.self, PlotCommand.self, CompareCommand.self, BaselineCommand.self,
            MergeCommand.self, TrainCommand.self, EvalCommand.self, GemmCommand.self, TopoCommand.self,
            PoolBenchCommand.self, KernelCommand.self, SlurmCommand.self,
            ProfileCommand.self, PeakCommand.self,
        ],
        // `dgperf --sweep …` has no subcommand name, so it lands here (SweepCommand checks for --sweep).
        // Declaring the sweep flags on the root instead would make them shadow subcommands' own
        // --output/--cells-from/--threads options.
        defaultSubcommand: SweepCommand.self
    )
}

enum DGPerfVersion {
    static let string = "0.1.0"
}
