import DGHarness

/// One output format of a run's results. Reporters only read and format; they never measure.
public protocol Reporter {
    /// File name used when the report is written next to results.json.
    var fileName: String { get }
    func render(_ results: RunResults) -> String
}

/// The results file itself (schema "dgperf.results/1").
public struct JSONReporter: Reporter {
    public init() {}
    public var fileName: String { "results.json" }
    public func render(_ results: RunResults) -> String { ResultsStore.encode(results) }
}

/// One flat row per cell with every raw and derived figure (for pandas / spreadsheets).
public struct CSVReporter: Reporter, Sendable {
    public init() {}
    public var fileName: String { "results.csv" }
    /// For `ResultsStore(sidecars:)`: keep results.csv in step with results.json.
    public static var sidecar: (String, @Sendable (RunResults) -> String) {
        ("results.csv", { @Sendable r in CSVReporter().render(r) })
    }
    public static let columns = [
        "key", "status", "reason", "model", "hidden", "batch", "threads", "active_fraction", "sparsity", "granularity",
        "mask", "experts", "top_k", "masks", "reps", "inner_calls", "min_s", "median_s", "mean_s", "p95_s", "stddev_s",
        "ci_low_s", "ci_high_s", "outliers", "stop_reason", "macs_useful", "macs_overhead", "macs_wasted", "macs_dense",
        "measured_active_fraction", "gflops", "peak_gflops_per_core", "fraction_of_peak", "speedup", "speedup_low",
        "speedup_high", "ideal_speedup", "fraction_of_ideal", "relative_mac_paper", "relative_mac_net",
        "relative_mac_executed", "accuracy", "pinned", "migrations", "kernel", "build", "fingerprint", "impl", "peer_blas",
        "cross_check",
    ]
    public func render(_ results: RunResults) -> String {
        var out = CSV.line(CSVReporter.columns) + "\n"
        let env = results.environment
        for r in results.cells {
            let c = r.cell, t = r.timing, s = t?.summary, d = r.derived
            func n(_ x: Double?) -> String { x.map { "\($0)" } ?? "" }
            func i(_ x: Int?) -> String { x.map(String.init) ?? "" }
            let row: [String] = [
                r.key, r.status.rawValue, r.reason ?? "", c.model.rawValue, c.hidden.map(String.init).joined(separator: "x"),
                "\(c.batch)", "\(c.threads)", "\(c.activeFraction)", "\(c.sparsity)", i(c.granularity),
                c.maskKind?.rawValue ?? "", i(c.experts), i(c.topK), r.masks, i(s?.count), i(t?.innerCalls),
                n(s?.min), n(s?.median), n(s?.mean), n(s?.p95), n(s?.stddev), n(t?.medianCI.lower), n(t?.medianCI.upper),
                i(t?.outliers), t?.stopReason.rawValue ?? "", i(r.cost?.useful.macs), i(r.cost?.overhead.macs),
                i(r.cost?.wasted.macs), i(r.denseCost?.macs), n(r.measuredActiveFraction), n(d?.gflops),
                n(r.peakGflopsPerCore), n(d?.fractionOfPeak), n(d?.speedup), n(d?.speedupLow), n(d?.speedupHigh),
                n(d?.idealSpeedup), n(d?.fractionOfIdeal), n(d?.relativeMacPaper), n(d?.relativeMacNet),
                n(d?.relativeMacExecuted), n(r.accuracy), r.runtime.map { "\($0.pinned)" } ?? "", i(r.runtime?.migrations),
                env.kernel, env.buildConfiguration, env.fingerprint, r.implementation.rawValue, r.isPeer ? r.notes["blas"] ?? "" : "",
                r.notes["crossCheck"] ?? "",
            ]
            out += CSV.line(row) + "\n"
        }
        return out
    }
}

/// The paper tables (efficiency + break-even) in one format.
public struct TableReporter: Reporter {
    public var format: TableFormat
    public init(format: TableFormat) { self.format = format }
    public var fileName: String {
        switch format { case .markdown: return "table.md"; case .latex: return "table.tex"; case .csv: return "table.csv" }
    }
    public func render(_ results: RunResults) -> String {
        let sep = format == .csv ? "\n" : "\n\n"
        var out = format.render(EfficiencyTable.make(results)) + sep + format.render(BreakEvenTable.make(results))
        if results.cells.contains(where: \.isPeer) { out += sep + format.render(PeerTable.make(results)) }
        return out
    }
}
