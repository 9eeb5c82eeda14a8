import ArgumentParser
import DGHarness
import DGReport

/// `dgperf compare`: noise-aware regression check between two runs (exit 1 on regression).
struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare two results files cell by cell; exit 1 if any cell regressed beyond the threshold.",
        discussion: """
        Matches cells by key. Compares same-run ratios (speedup over the same run's dense model, GFLOP/s as a
        fraction of the same run's measured peak) and, when both runs share a machine fingerprint, absolute time.
        A metric regresses when it is worse by more than its threshold AND the repetitions differ
        (Mann-Whitney U, p < alpha).
        Examples:
          dgperf compare results/baselines/<fingerprint>.json results/…/results.json
          dgperf compare --baseline results/…/results.json          # this machine's committed baseline
          dgperf compare BASE.json NEW.json --threshold 15% --metric-threshold time=20% --write-regressed regressed.txt
        """
    )
    @Argument(help: "BASE.json NEW.json (or only NEW.json with --baseline).") var files: [String] = []
    @Flag(help: "Use the committed baseline of NEW's machine (results/baselines/<fingerprint>.json; another one, ratios only, if none).") var baseline = false
    @Option(help: "Baselines directory.") var baselinesDir: String = Baseline.defaultDirectory
    @Option(help: "Minimum relative change that counts (default 10%).") var threshold: String = "10%"
    @Option(help: "Per-metric threshold, METRIC=VALUE (speedup, peak-fraction, time); repeatable.") var metricThreshold: [String] = []
    @Option(help: "Significance level for the Mann-Whitney U test.") var alpha: Double = 0.01
    @Option(help: "Write the keys of regressed cells to this file (for `dgperf sweep --cells-from`).") var writeRegressed: String?
    @Option(help: "Only compare the cell keys listed in this file.") var cellsFrom: String?
    @Flag(help: "Also list unchanged metrics.") var all = false
    @Option(help: "markdown, latex or csv.") var format: String = "markdown"

    func run() throws {
        try reportingHarnessErrors {
            guard let fmt = TableFormat(rawValue: format) else {
                throw HarnessError(.usage, "--format '\(format)' is not supported; choose markdown, latex or csv")
            }
            var options = CompareOptions()
            options.threshold = try Compare.parseThreshold(threshold, flag: "--threshold")
            for m in metricThreshold { let (k, v) = try Compare.parseMetricThreshold(m); options.metricThresholds[k] = v }
            guard alpha > 0, alpha < 1 else { throw HarnessError(.usage, "--alpha must be in (0, 1), e.g. 0.01 (got \(alpha))") }
            options.alpha = alpha
            if let cellsFrom {
                let keys = try AtomicFile.read(cellsFrom).split(separator: "\n").map(String.init).filter { !$0.isEmpty && !$0.hasPrefix("#") }
                options.onlyKeys = Set(keys)
            }
            let basePath: String, newPath: String
            switch (baseline, files.count) {
            case (false, 2): basePath = files[0]; newPath = files[1]
            case (true, 1):
                newPath = files[0]
                let new = try ResultsStore.load(newPath)
                guard let sel = Baseline.select(fingerprint: new.environment.fingerprint, directory: baselinesDir) else {
                    throw HarnessError(.noInput, "no baseline in '\(baselinesDir)'; create one with `dgperf baseline update \(newPath)`")
                }
                basePath = sel.path
                if !sel.exact { print("note: no baseline for this machine (\(new.environment.fingerprint)); comparing against \(sel.path) — same-run ratios only") }
            default:
                throw HarnessError(.usage, "compare needs BASE.json NEW.json, or --baseline NEW.json")
            }
            let base = try ResultsStore.load(basePath), new = try ResultsStore.load(newPath)
            let report = Compare.compare(base: base, new: new, options: options)
            print("base: \(basePath)\nnew:  \(newPath)\n")
            print(fmt.render(ComparisonTable.make(report, showUnchanged: all)), terminator: "")
            if let writeRegressed {
                try AtomicFile.write(report.regressedKeys.map { $0 + "\n" }.joined(), to: writeRegressed)
            }
            if report.rows.isEmpty { print("\nnote: no cell was measured in both runs; nothing compared") }
            if report.hasRegression {
                print("\nREGRESSION in \(report.regressedKeys.count) cell\(report.regressedKeys.count == 1 ? "" : "s"): \(report.regressedKeys.joined(separator: "; "))")
                throw ExitCode(1)
            }
            print("\nno regression")
        }
    }
}
