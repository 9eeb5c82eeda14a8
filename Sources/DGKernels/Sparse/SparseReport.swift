/// Where a gated layer writes its active outputs.
public enum SparseLayout: String, Sendable, Codable, CaseIterable {
    /// Only active columns, packed: B × activeUnits (shared masks only). The next layer reads it with no map.
    case compact
    /// Full width B × H, inactive entries written as 0.
    case scattered
}

/// The kernel path a sparse call ran (recorded in every report).
public enum SparseStrategy: String, Sendable, Codable, CaseIterable {
    /// Mask is all-on: the plain dense GEMM.
    case dense
    /// Shared mask, B ≥ 2: one GEMM whose weight operand is gathered through the active-unit map.
    case sharedGather
    /// Shared mask, B ≥ 2: W's active rows read in place as the micro-kernel's broadcast side (no packing of W),
    /// activations packed once, outputs transposed into place; the cost model picks it over `sharedGather`.
    case sharedWeightRows
    /// Shared mask, small batch: gathered-row gemv over a few samples at once (four weight rows against up to four
    /// sample vectors), so W's active rows are read once for the whole batch; the cost model picks it.
    case sharedGemv
    /// Shared mask, B = 1: matrix-vector products over contiguous runs of active weight rows.
    case sharedRuns
    /// Shared mask whose active units are whole NR-unit panels, with pre-packed weights: only those panels run.
    case sharedPanels
    /// Per-sample (a): full dense GEMM, then inactive outputs zeroed (what a PyTorch user writes).
    case denseThenMask
    /// Per-sample (b): per group of adjacent blocks, gather the samples that use it and run one GEMM on them.
    case unitMajor
    /// Per-sample (b) for narrow groups (mostly unit gates): each active unit's weight row dotted with just the samples
    /// that use it, no padding to the register tile; the cost model picks it over the grouped GEMM.
    case unitMajorDots
    /// Per-sample (c): per sample, matrix-vector products over its runs of active weight rows.
    case sampleMajor
    /// Per-sample (b + a): the blocks many samples use ("hot") run as one shared-mask GEMM over the whole batch, masked
    /// after; the rest as unit-major dot products. Learned gates give such masks (a few units on for most inputs, most
    /// units for few); the cost model picks the split.
    case hotColdSplit
}

/// Shared-mask kernel request (batch ≥ 2); `.auto` asks the calibrated cost model.
public enum SharedPathChoice: String, Sendable, Codable, CaseIterable {
    case auto, packedGather, weightRows, gemv
}

/// Unit-major kernel request (per-sample masks): GEMMs over groups of blocks, or dot products per unit;
/// `.auto` asks the calibrated cost model.
public enum UnitMajorKernelChoice: String, Sendable, Codable, CaseIterable {
    case auto, gemm, dots
}

/// Per-sample strategy request; `.auto` asks the calibrated cost model.
public enum PerSampleStrategy: String, Sendable, Codable, CaseIterable {
    case auto, denseThenMask, unitMajor, sampleMajor, hotColdSplit
}

/// Predicted seconds of each per-sample strategy (a struct, not a dictionary: building a dictionary on every call
/// was ~1.5 % of a per-sample layer at B = 32).
public struct PerSamplePredictions: Sendable, Codable, Equatable {
    public var denseThenMask: Double
    public var unitMajor: Double
    public var sampleMajor: Double
    public var hotColdSplit: Double
}

/// What one sparse-kernel call did and what it cost.
///
/// - paper relative MAC = `cost.useful.macs / denseMACs` (active units only),
/// - net relative MAC = `(cost.useful + cost.overhead).macs / denseMACs` plus whatever gate/router
///   MACs the caller adds to `overhead` (the router is included for MoE),
/// - executed MACs = `cost.total.macs` (wasted MACs were computed and thrown away).
public struct SparseReport: Sendable, Codable, Equatable {
    public var strategy: SparseStrategy
    public var cost: CostBreakdown
    /// MACs of the same layer without any mask (B × H × D).
    public var denseMACs: Int
    /// Active (sample, unit) pairs.
    public var activePairs: Int
    /// Cost-model predictions for the per-sample strategies, when the model was consulted (`.auto`).
    public var predictions: PerSamplePredictions?

    public init(strategy: SparseStrategy, cost: CostBreakdown, denseMACs: Int, activePairs: Int,
                predictions: PerSamplePredictions? = nil) {
        self.strategy = strategy; self.cost = cost; self.denseMACs = denseMACs
        self.activePairs = activePairs; self.predictions = predictions
    }

    /// `predictions` keyed by strategy name (empty when the model was not consulted).
    public var predictedSeconds: [String: Double] {
        guard let p = predictions else { return [:] }
        return [SparseStrategy.denseThenMask.rawValue: p.denseThenMask, SparseStrategy.unitMajor.rawValue: p.unitMajor,
                SparseStrategy.sampleMajor.rawValue: p.sampleMajor, SparseStrategy.hotColdSplit.rawValue: p.hotColdSplit]
    }

    public var paperRelativeMAC: Double { denseMACs == 0 ? 0 : Double(cost.useful.macs) / Double(denseMACs) }
    public var netRelativeMAC: Double {
        denseMACs == 0 ? 0 : Double(cost.useful.macs + cost.overhead.macs) / Double(denseMACs)
    }
    public var executedRelativeMAC: Double { denseMACs == 0 ? 0 : Double(cost.total.macs) / Double(denseMACs) }
}
