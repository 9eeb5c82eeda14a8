import DGModels

/// One point of a sweep: a model at one shape, batch, thread count and (for gated models) r, G and mask kind.
public struct Cell: Codable, Sendable, Hashable {
    public var model: ModelKind
    public var hidden: [Int]
    public var batch: Int
    public var threads: Int
    /// Active fraction r (1 for dense/dropout; topK/experts for moe).
    public var activeFraction: Double
    /// 1 − r, recorded so nobody confuses the two.
    public var sparsity: Double
    /// Units per gate (gated models only).
    public var granularity: Int?
    /// Mask kind (gated models only).
    public var maskKind: MaskKind?
    /// Experts and top-k (moe only).
    public var experts: Int?
    public var topK: Int?

    public init(model: ModelKind, hidden: [Int], batch: Int, threads: Int, activeFraction: Double = 1,
                granularity: Int? = nil, maskKind: MaskKind? = nil, experts: Int? = nil, topK: Int? = nil) {
        self.model = model; self.hidden = hidden; self.batch = batch; self.threads = threads
        self.activeFraction = activeFraction; self.sparsity = Cell.round(1 - activeFraction)
        self.granularity = granularity; self.maskKind = maskKind; self.experts = experts; self.topK = topK
    }

    /// Whether the model gates units (its r is a sweep axis).
    public static func isGated(_ kind: ModelKind) -> Bool { kind == .dg || kind == .random }

    /// Timed alternately with its shape's dense model (every cell but the dense one; see `CellResult.referenceTiming`).
    public var pairsWithDense: Bool { model != .dense }

    /// The shape group: cells that share it are compared with the same dense reference.
    public var groupKey: String { "h=\(hidden.map(String.init).joined(separator: "x")) b=\(batch) t=\(threads)" }

    /// Stable identity across runs, machines and versions; compare and resume match on it.
    public var key: String {
        var k = "\(model.rawValue) \(groupKey)"
        if Cell.isGated(model) {
            k += " r=\(activeFraction) g=\(granularity ?? 1) mask=\((maskKind ?? .perSample).rawValue)"
        }
        if model == .moe { k += " e=\(experts ?? 0) k=\(topK ?? 0)" }
        return k
    }

    /// The model contract's spec for this cell.
    public func modelSpec(_ sweep: SweepSpec) -> ModelSpec {
        ModelSpec(kind: model, inputFeatures: sweep.inputFeatures, hidden: hidden, classes: sweep.classes,
                  activeFraction: activeFraction, granularity: granularity ?? 1, maskKind: maskKind ?? .perSample,
                  gate: sweep.gate, experts: experts ?? sweep.experts, topK: topK ?? sweep.topK,
                  capacityFactor: sweep.capacityFactor)
    }

    /// Rounds away binary noise such as 1 − 0.9 = 0.09999999999999998 (12 significant decimals).
    public static func round(_ x: Double) -> Double { (x * 1e12).rounded() / 1e12 }
}

/// Deterministic `--shard K/N` slice (K is 1-based). Whole shape groups are dealt round-robin, so every
/// shard measures the dense reference of the gated cells it holds and speedups stay same-run ratios.
public struct Shard: Codable, Sendable, Equatable, CustomStringConvertible {
    public var index: Int
    public var count: Int
    public init(index: Int, count: Int) { self.index = index; self.count = count }
    public var description: String { "\(index)/\(count)" }

    public static func parse(_ text: String) throws -> Shard {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let k = Int(parts[0]), let n = Int(parts[1]) else {
            throw HarnessError.usage("--shard '\(text)' is not of the form K/N; e.g. --shard 1/4 runs the first of four slices")
        }
        guard n >= 1, k >= 1, k <= n else {
            throw HarnessError.usage("--shard \(text): need 1 ≤ K ≤ N (shards are numbered from 1); e.g. --shard 2/4")
        }
        return Shard(index: k, count: n)
    }
}

extension SweepSpec {
    /// All cells in a fixed order: hidden → threads → batch → model (dense first) → r (as given) → G → mask kind.
    /// A dense reference cell is included for every shape even when `dense` is not among the models,
    /// because speedups are only ever computed against a dense run measured in the same sweep.
    public func expandCells() -> [Cell] {
        let spec = deduplicated()
        var kinds = spec.models.filter { $0 != .dense }
        kinds.insert(.dense, at: 0)
        var cells: [Cell] = []
        for h in spec.hidden {
            for t in spec.threads {
                for b in spec.batches {
                    for kind in kinds {
                        switch kind {
                        case .dense, .dropout:
                            cells.append(Cell(model: kind, hidden: h, batch: b, threads: t))
                        case .moe:
                            cells.append(Cell(model: kind, hidden: h, batch: b, threads: t,
                                              activeFraction: Cell.round(Double(spec.topK) / Double(spec.experts)),
                                              experts: spec.experts, topK: spec.topK))
                        case .dg, .random:
                            for r in spec.activeFractions {
                                for g in spec.granularities {
                                    for m in spec.maskKinds {
                                        cells.append(Cell(model: kind, hidden: h, batch: b, threads: t,
                                                          activeFraction: r, granularity: g, maskKind: m))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return cells
    }

    /// The cells shard `shard` runs (all when nil), optionally restricted to `keys` (plus their dense references).
    public func selectCells(shard: Shard?, keys: Set<String>? = nil) -> [Cell] {
        var cells = expandCells()
        if let keys {
            let groups = Set(cells.filter { keys.contains($0.key) }.map(\.groupKey))
            cells = cells.filter { keys.contains($0.key) || ($0.model == .dense && groups.contains($0.groupKey)) }
        }
        guard let shard, shard.count > 1 else { return cells }
        let assignment = shardAssignment(count: shard.count)
        return cells.filter { assignment[$0.groupKey] == shard.index - 1 }
    }

    /// Shape group → shard (0-based): whole groups (so each shard keeps its dense references), balanced by
    /// estimated measuring time with a deterministic longest-first greedy (`balancedShards`), not by count.
    public func shardAssignment(count: Int) -> [String: Int] {
        var order: [String] = []
        var cost: [String: Double] = [:]
        for c in expandCells() {
            if cost[c.groupKey] == nil { order.append(c.groupKey) }
            cost[c.groupKey, default: 0] += estimatedSeconds(c)
        }
        var result: [String: Int] = [:]
        for (s, groups) in balancedShards(cellCosts: order.map { cost[$0]! }, count: count).enumerated() {
            for g in groups { result[order[g]] = s }
        }
        return result
    }

    /// Rough wall time to measure one cell under the repetition policy: warm-up, then the time budget or
    /// `minReps` samples of at least one call (dense-equivalent MACs at ~100 GMAC/s per thread), whichever is longer;
    /// twice that for a cell paired with its dense reference (every non-dense cell).
    func estimatedSeconds(_ c: Cell) -> Double {
        let dims = [inputFeatures] + c.hidden + [classes]
        var macs = 0.0
        for l in 0..<(dims.count - 1) { macs += Double(c.batch * dims[l] * dims[l + 1]) }
        let call = max(macs / (100e9 * Double(c.threads)), 2e-6)
        let paired = c.pairsWithDense
        let sample = max(repetition.minimumSampleSeconds(paired: paired), call)
        let timed = repetition.warmupSeconds + max(repetition.budgetSeconds, Double(repetition.minReps) * sample)
        return paired ? 2 * timed : timed
    }
}
