import DGStats

/// What `dgperf compare` judges. All are oriented so that "higher is better" after `orientation`.
public enum CompareMetric: String, CaseIterable, Codable, Sendable {
    /// Same-run ratio per repetition (non-dense cells): the paired dense sample / this cell's sample, or (records without
    /// a paired reference) the dense cell's median / this cell's sample.
    case speedup
    /// Same-run ratio: executed GFLOP/s per repetition / (same-run measured FMA peak × threads).
    case peakFraction = "peak-fraction"
    /// Absolute seconds per forward call: only compared when both runs have the same machine fingerprint.
    case time
}

public enum Verdict: String, Codable, Sendable {
    case improved, unchanged, regressed
}

public struct CompareOptions: Sendable {
    /// Minimum relative change (in the bad direction) that counts, per metric; default 10 %.
    public var threshold: Double = 0.10
    public var metricThresholds: [CompareMetric: Double] = [:]
    /// Significance level of the Mann–Whitney U test on repetitions.
    public var alpha: Double = 0.01
    /// Only these keys (e.g. the re-run of regressed cells); nil = all.
    public var onlyKeys: Set<String>?
    public init() {}
    public func threshold(for m: CompareMetric) -> Double { metricThresholds[m] ?? threshold }
}

/// One metric of one cell, base vs new.
public struct MetricComparison: Sendable, Equatable {
    public var key: String
    public var metric: CompareMetric
    public var base: Double
    public var new: Double
    /// Relative change in the "better" direction: +0.2 = 20 % better, −0.3 = 30 % worse.
    public var change: Double
    public var pValue: Double
    public var threshold: Double
    public var verdict: Verdict
}

public struct ComparisonReport: Sendable {
    public var baseFingerprint: String
    public var newFingerprint: String
    public var sameMachine: Bool
    public var metrics: [CompareMetric]
    public var rows: [MetricComparison]
    /// Cells measured in base but absent or not measured in new, and vice versa.
    public var missingInNew: [String]
    public var missingInBase: [String]
    public var notes: [String]
    public var regressions: [MetricComparison] { rows.filter { $0.verdict == .regressed } }
    public var regressedKeys: [String] {
        var seen = Set<String>(); return regressions.map(\.key).filter { seen.insert($0).inserted }
    }
    public var hasRegression: Bool { !regressions.isEmpty }
}

/// Noise-aware comparison of two runs: a metric regresses when it is worse by more than its threshold
/// (median vs median) AND the repetitions differ significantly (two-sided Mann–Whitney U, p < alpha).
/// Both conditions are needed: a tiny but consistent shift is not a regression worth failing CI for,
/// and a large shift within wide spread is not evidence.
public enum Compare {
    public static func compare(base: RunResults, new: RunResults, options: CompareOptions = CompareOptions()) -> ComparisonReport {
        let same = base.environment.fingerprint == new.environment.fingerprint
        let metrics: [CompareMetric] = same ? [.speedup, .peakFraction, .time] : [.speedup, .peakFraction]
        var notes: [String] = []
        if !same {
            notes.append("different machines (base \(base.environment.fingerprint), new \(new.environment.fingerprint)): comparing same-run ratios only (speedup, peak-fraction), not absolute times")
        }
        if base.spec.cold != new.spec.cold { notes.append("cache state differs (cold vs warm): ratios may shift for that reason alone") }
        func measured(_ r: RunResults) -> [String: CellResult] {
            var d: [String: CellResult] = [:]
            for c in r.dgperfCells where c.status == .ok && (options.onlyKeys?.contains(c.key) ?? true) { d[c.key] = c }
            return d
        }
        let b = measured(base), n = measured(new)
        let dense = { (r: RunResults) -> [String: CellResult] in
            var d: [String: CellResult] = [:]
            for c in r.dgperfCells where c.status == .ok && c.cell.model == .dense { d[c.cell.groupKey] = c }
            return d
        }
        let bDense = dense(base), nDense = dense(new)
        var rows: [MetricComparison] = []
        var strategyChanged: [String] = []
        for c in base.cells where b[c.key] != nil {
            guard let nc = n[c.key] else { continue }
            let bc = b[c.key]!
            // Fraction of peak counts executed FLOPs: when the cost model chose another strategy (e.g. dense-then-mask
            // on one machine, unit-major on the other) the two runs did different work, so it is not comparable.
            let sameWork = Self.sameExecutedWork(bc, nc)
            if !sameWork { strategyChanged.append(c.key) }
            for m in metrics where m != .peakFraction || sameWork {
                guard let bs = samples(m, bc, bDense[bc.cell.groupKey]), let ns = samples(m, nc, nDense[nc.cell.groupKey]),
                      let bsum = Summary(bs), let nsum = Summary(ns), let test = MannWhitneyU(ns, bs), bsum.median > 0 else { continue }
                // time: lower is better → flip so that positive change = better.
                let ratio = nsum.median / bsum.median
                let change = m == .time ? 1 / ratio - 1 : ratio - 1
                let th = options.threshold(for: m)
                let significant = test.pValue < options.alpha
                let verdict: Verdict = significant && change < -th ? .regressed : significant && change > th ? .improved : .unchanged
                rows.append(MetricComparison(key: c.key, metric: m, base: bsum.median, new: nsum.median, change: change,
                                             pValue: test.pValue, threshold: th, verdict: verdict))
            }
        }
        if !strategyChanged.isEmpty {
            notes.append("peak-fraction not compared for \(strategyChanged.count) cell(s) whose executed work differs by more than 5 % (another strategy ran): \(strategyChanged.joined(separator: "; "))")
        }
        let missingInNew = base.cells.filter { b[$0.key] != nil && n[$0.key] == nil }.map(\.key)
        let missingInBase = new.cells.filter { n[$0.key] != nil && b[$0.key] == nil }.map(\.key)
        return ComparisonReport(baseFingerprint: base.environment.fingerprint, newFingerprint: new.environment.fingerprint,
                                sameMachine: same, metrics: metrics, rows: rows, missingInNew: missingInNew,
                                missingInBase: missingInBase, notes: notes)
    }

    /// Executed MACs within 5 % (or unknown on either side).
    static func sameExecutedWork(_ a: CellResult, _ b: CellResult) -> Bool {
        guard let x = a.cost?.total.macs, let y = b.cost?.total.macs, x > 0 else { return true }
        return abs(Double(y) / Double(x) - 1) <= 0.05
    }

    /// Per-repetition values of `metric` (nil when the metric does not apply to the cell).
    static func samples(_ metric: CompareMetric, _ c: CellResult, _ dense: CellResult?) -> [Double]? {
        guard let t = c.timing else { return nil }
        switch metric {
        case .time:
            return t.samples
        case .speedup:
            guard c.cell.model != .dense else { return nil }
            if let paired = c.pairedSpeedups { return paired }
            guard let d = dense?.timing?.summary.median else { return nil }
            return t.samples.map { d / $0 }
        case .peakFraction:
            guard let cost = c.cost, let peak = c.peakGflopsPerCore, peak > 0 else { return nil }
            let denom = peak * Double(c.cell.threads) * 1e9
            return t.samples.map { cost.total.flops / $0 / denom }
        }
    }

    /// "10%", "0.1", "speedup=5%" parsing for --threshold / --metric-threshold.
    public static func parseThreshold(_ s: String, flag: String) throws -> Double {
        let v = try Parse.fraction(s, flag: flag, example: "10% (or 0.1)")
        guard v > 0, v < 1 else { throw HarnessError.usage("\(flag) \(s) must be between 0% and 100% (exclusive); e.g. \(flag) 10%") }
        return v
    }

    public static func parseMetricThreshold(_ s: String) throws -> (CompareMetric, Double) {
        let parts = s.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2 else {
            throw HarnessError.usage("--metric-threshold '\(s)' is not METRIC=VALUE; e.g. --metric-threshold speedup=5%")
        }
        guard let m = CompareMetric(rawValue: parts[0]) else {
            throw HarnessError.usage("--metric-threshold: unknown metric '\(parts[0])'; choose \(CompareMetric.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return (m, try parseThreshold(parts[1], flag: "--metric-threshold \(m.rawValue)="))
    }
}
