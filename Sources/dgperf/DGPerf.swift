import ArgumentParser

/// The `dgperf` command: thin; each subcommand lives in Commands/ and calls into the library modules.
@main
struct DGPerf: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dgperf",
        abstract: "Measures whether conditional computation in MLPs pays off on CPUs.",
        version: DGPerfVersion.string,
        subcommands: [GemmCommand.self, SlurmCommand.self]
    )
}

enum DGPerfVersion {
    static let string = "0.1.0"
}
