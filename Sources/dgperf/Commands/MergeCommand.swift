import ArgumentParser
import DGHarness
import DGReport

/// `dgperf merge`: join `--shard K/N` results into one file.
struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Join shard results (dgperf sweep --shard K/N) into one results directory.",
        discussion: """
        Example:
          for k in 1 2 3 4; do dgperf sweep --preset full --shard $k/4 --output results/full-$k; done   # on 4 hosts
          dgperf merge results/full-1 results/full-2 results/full-3 results/full-4 --output results/full
        """
    )
    @Argument(help: "Shard results files (or directories).") var inputs: [String]
    @Option(help: "Output directory for the merged results.json, results.csv and table.md.") var output: String

    func run() throws {
        try reportingHarnessErrors {
            guard !inputs.isEmpty else { throw HarnessError(.usage, "merge needs at least one results file") }
            let parts = try inputs.map { ($0, try ResultsStore.load($0)) }
            let (merged, notes) = try Merge.merge(parts)
            if AtomicFile.exists(output + "/results.json") {
                throw HarnessError(.cannotCreate, "'\(output)' already holds a results.json; choose a new --output")
            }
            try AtomicFile.makeWritableDirectory(output)
            try ResultsStore(directory: output, sidecars: [CSVReporter.sidecar]).write(merged)
            let table = TableReporter(format: .markdown)
            try AtomicFile.write(table.render(merged), to: output + "/" + table.fileName)
            for n in notes { printErr("note: \(n)") }
            print("\(output)/results.json: \(merged.cells.count) cells from \(inputs.count) file\(inputs.count == 1 ? "" : "s")\(merged.complete ? ", complete" : ", INCOMPLETE")")
        }
    }
}
