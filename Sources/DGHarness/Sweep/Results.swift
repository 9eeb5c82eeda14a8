import DGKernels
import DGStats

/// Results file schema ("dgperf.results/1"). Readers reject other schema strings with a clear message.
public enum ResultsSchema {
    public static let current = "dgperf.results/1"
}

/// Everything one sweep (or one shard, or a merge of shards) produced. Plain data: the runner fills it,
/// reporters and compare only read it.
public struct RunResults: Codable, Sendable, Equatable {
    public var schema: String
    public var createdAt: String
    public var updatedAt: String
    /// False while running or after an interruption (`--resume` continues it).
    public var complete: Bool
    public var spec: SweepSpec
    public var shard: Shard?
    /// Keys the run was restricted to (`--cells-from`), if any.
    public var cellFilter: [String]?
    public var environment: EnvironmentInfo
    /// Every machine that measured cells of this file, when shards from several hosts were merged
    /// (optional, absent in single-run files; each cell names its machine in `CellResult.fingerprint`).
    public var environments: [EnvironmentInfo]?
    public var cells: [CellResult]

    public init(spec: SweepSpec, shard: Shard?, cellFilter: [String]?, environment: EnvironmentInfo, now: String) {
        schema = ResultsSchema.current; createdAt = now; updatedAt = now; complete = false
        self.spec = spec; self.shard = shard; self.cellFilter = cellFilter; self.environment = environment; cells = []
    }

    public func cell(_ key: String) -> CellResult? { cells.first { $0.key == key } }
}

public enum CellStatus: String, Codable, Sendable {
    /// Measured.
    case ok
    /// Not measured for a known, non-error reason (e.g. the model kind is not implemented yet).
    case skipped
    /// The model threw on this cell's settings.
    case failed
}

/// Timing of one cell: every repetition (seconds per forward call) and its statistics.
public struct CellTiming: Codable, Sendable, Equatable {
    public var samples: [Double]
    public var summary: Summary
    public var medianCI: MedianInterval
    public var outliers: Int
    public var innerCalls: Int
    public var warmupCalls: Int
    public var stopReason: RepetitionPolicy.StopReason

    public init(samples: [Double], innerCalls: Int, warmupCalls: Int, stopReason: RepetitionPolicy.StopReason) {
        self.samples = samples
        summary = Summary(samples)!
        medianCI = MedianInterval(samples)!
        outliers = Outliers.tukeyCount(samples)
        self.innerCalls = innerCalls; self.warmupCalls = warmupCalls; self.stopReason = stopReason
    }
}

/// Figures derived from a cell and its same-run dense reference (recomputed whenever results are written).
public struct DerivedFigures: Codable, Sendable, Equatable {
    /// Executed FLOPs (useful + overhead + wasted) per median second.
    public var gflops: Double
    /// gflops / (measured one-core FMA peak × threads).
    public var fractionOfPeak: Double?
    /// Speedup over the dense model of the same shape, same run: the median of per-repetition ratios (reference /
    /// this) when the cell was paired, else the dense cell's median / this median. nil when neither exists.
    public var speedup: Double?
    /// Speedup range from the two medians' 95 % CIs.
    public var speedupLow: Double?
    public var speedupHigh: Double?
    /// 1 / r.
    public var idealSpeedup: Double
    /// speedup / idealSpeedup.
    public var fractionOfIdeal: Double?
    /// Useful MACs / dense MACs (what papers report).
    public var relativeMacPaper: Double
    /// (Useful + overhead) MACs / dense MACs.
    public var relativeMacNet: Double
    /// All executed MACs (incl. wasted) / dense MACs.
    public var relativeMacExecuted: Double
}

/// Who executed a cell record: dgperf's kernels, or a peer framework running the same cell in the same run
/// (`--peers numpy,torch`).
public enum Implementation: String, Codable, Sendable, CaseIterable {
    case dgperf, numpy, torch
}

/// One cell's record.
public struct CellResult: Codable, Sendable, Equatable {
    /// `cell.key` for dgperf records; peer records append " impl=<peer>" so every record's key is unique.
    public var key: String
    public var cell: Cell
    /// Who ran it. Optional in the file (schema unchanged): absent means dgperf (files written before peers).
    public var impl: Implementation?
    /// Machine fingerprint of the run that measured it (set by `dgperf merge`; absent = `environment`'s).
    public var fingerprint: String?
    public var status: CellStatus
    public var reason: String?
    public var measuredAt: String
    /// "synthetic" or "trained:<dir>".
    public var masks: String
    /// One-core FMA peak (GFLOP/s) measured by the run that measured this cell.
    public var peakGflopsPerCore: Double?
    public var timing: CellTiming?
    /// The group's dense model timed alternately with this cell (one sample of each per repetition), so drift of a
    /// shared machine hits both alike: the speedup is then the median of the per-repetition ratios. Optional in the
    /// file (schema unchanged): absent for dense and peer cells and in files written before pairing, whose speedup
    /// comes from the group's dense cell.
    public var referenceTiming: CellTiming?
    /// Executed work of one forward call.
    public var cost: CostBreakdown?
    /// The dense model's work for the same batch (denominator of relative MAC).
    public var denseCost: KernelCost?
    /// Active fraction the model reports it actually ran.
    public var measuredActiveFraction: Double?
    public var derived: DerivedFigures?
    public var notes: [String: String]
    /// Pinned worker pool counters (absent with the unpinned executor).
    public var runtime: RuntimeStatistics?
    /// Test accuracy when trained weights were timed.
    public var accuracy: Double?

    public init(cell: Cell, status: CellStatus, reason: String? = nil, measuredAt: String, masks: String,
                peakGflopsPerCore: Double? = nil, timing: CellTiming? = nil, cost: CostBreakdown? = nil,
                denseCost: KernelCost? = nil, measuredActiveFraction: Double? = nil, notes: [String: String] = [:],
                runtime: RuntimeStatistics? = nil, accuracy: Double? = nil, impl: Implementation = .dgperf,
                referenceTiming: CellTiming? = nil) {
        key = CellResult.key(cell, impl); self.impl = impl; self.cell = cell; self.status = status; self.reason = reason; self.measuredAt = measuredAt
        self.masks = masks; self.peakGflopsPerCore = peakGflopsPerCore; self.timing = timing; self.cost = cost
        self.denseCost = denseCost; self.measuredActiveFraction = measuredActiveFraction; self.notes = notes
        self.runtime = runtime; self.accuracy = accuracy; self.referenceTiming = referenceTiming
    }

    /// Per-repetition speedups over the paired dense reference (nil when the cell was not paired).
    public var pairedSpeedups: [Double]? {
        guard let r = referenceTiming?.samples, let t = timing?.samples, r.count == t.count, !t.isEmpty else { return nil }
        return zip(r, t).map { $0 / $1 }
    }

    /// Median seconds per forward call (ok cells).
    public var medianSeconds: Double? { timing?.summary.median }

    public var implementation: Implementation { impl ?? .dgperf }
    public var isPeer: Bool { implementation != .dgperf }

    /// The record key of `cell` run by `impl`.
    public static func key(_ cell: Cell, _ impl: Implementation) -> String {
        impl == .dgperf ? cell.key : cell.key + " impl=" + impl.rawValue
    }
}

extension RunResults {
    /// Recomputes every cell's derived figures from its own record and its group's dense cell
    /// (a peer's speedup is over the same peer's dense run).
    public mutating func recomputeDerived() {
        var denseByGroup: [String: CellResult] = [:]
        func group(_ c: CellResult) -> String { c.implementation.rawValue + " " + c.cell.groupKey }
        for c in cells where c.cell.model == .dense && c.status == .ok { denseByGroup[group(c)] = c }
        for i in cells.indices {
            cells[i].derived = Derivation.derive(cells[i], dense: denseByGroup[group(cells[i])])
        }
    }

    /// The records dgperf itself measured (what efficiency tables, plots, merge and compare's speedups use).
    public var dgperfCells: [CellResult] { cells.filter { !$0.isPeer } }

    /// Record order: sweep expansion order of the cell, dgperf first, then the peers.
    public mutating func sortCells(by order: [String: Int]) {
        let implRank = Dictionary(uniqueKeysWithValues: Implementation.allCases.enumerated().map { ($1, $0) })
        cells.sort {
            let a = order[$0.cell.key] ?? Int.max, b = order[$1.cell.key] ?? Int.max
            return a != b ? a < b : implRank[$0.implementation]! < implRank[$1.implementation]!
        }
    }
}

enum Derivation {
    static func derive(_ c: CellResult, dense: CellResult?) -> DerivedFigures? {
        guard c.status == .ok, let t = c.timing, let cost = c.cost, let dc = c.denseCost, t.summary.median > 0 else { return nil }
        func finite(_ x: Double?) -> Double? { x.flatMap { $0.isFinite ? $0 : nil } }
        let gflops = cost.total.flops / t.summary.median / 1e9
        let peak = c.peakGflopsPerCore.map { $0 * Double(c.cell.threads) }
        let gated = c.cell.model != .dense && c.cell.model != .dropout
        let ideal = gated ? 1 / c.cell.activeFraction : 1
        var speedup: Double?, low: Double?, high: Double?
        if c.cell.model == .dense {
            speedup = 1
        } else if let ratios = c.pairedSpeedups, let s = Summary(ratios) {
            speedup = s.median
            if let ci = MedianInterval(ratios) { low = ci.lower; high = ci.upper }
        } else if let d = dense?.timing {
            speedup = d.summary.median / t.summary.median
            low = d.medianCI.lower / t.medianCI.upper
            high = d.medianCI.upper / t.medianCI.lower
        }
        let denseMacs = Double(max(dc.macs, 1))
        return DerivedFigures(
            gflops: gflops, fractionOfPeak: finite(peak.map { gflops / $0 }),
            speedup: finite(speedup), speedupLow: finite(low), speedupHigh: finite(high),
            idealSpeedup: ideal, fractionOfIdeal: finite(speedup.map { $0 / ideal }),
            relativeMacPaper: Double(cost.useful.macs) / denseMacs,
            relativeMacNet: Double(cost.useful.macs + cost.overhead.macs) / denseMacs,
            relativeMacExecuted: Double(cost.total.macs) / denseMacs)
    }
}
