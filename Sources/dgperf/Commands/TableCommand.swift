import ArgumentParser
import DGHarness
import DGReport

/// `dgperf table`: paper-style efficiency and break-even tables from a results file.
struct TableCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "table",
        abstract: "Print the efficiency and break-even tables of a results file.",
        discussion: """
        Examples:
          dgperf table results/20250101-120000-host/results.json
          dgperf table results/…/results.json --format latex > table.tex
        """
    )
    @Argument(help: "results.json (or its directory).") var results: String
    @Option(help: "markdown, latex or csv.") var format: String = "markdown"
    @Option(help: "Which table: all, efficiency, break-even or peers (dgperf vs numpy/torch of a --peers run).") var table: String = "all"

    func run() throws {
        try reportingHarnessErrors {
            guard let fmt = TableFormat(rawValue: format) else {
                throw HarnessError(.usage, "--format '\(format)' is not supported; choose markdown, latex or csv")
            }
            let r = try ResultsStore.load(results)
            switch table {
            case "all": print(TableReporter(format: fmt).render(r), terminator: "")
            case "efficiency": print(fmt.render(EfficiencyTable.make(r)), terminator: "")
            case "break-even": print(fmt.render(BreakEvenTable.make(r)), terminator: "")
            case "peers":
                guard r.cells.contains(where: \.isPeer) else {
                    throw HarnessError(.data, "'\(results)' holds no peer records; run the sweep with --peers numpy (or numpy,torch)")
                }
                print(fmt.render(PeerTable.make(r)), terminator: "")
            default: throw HarnessError(.usage, "--table '\(table)' is not known; choose all, efficiency, break-even or peers")
            }
        }
    }
}
