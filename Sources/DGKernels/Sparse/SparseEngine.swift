import DGRuntime
import CKernelHints

/// Gated (conditionally computed) linear layers on top of the one dense GEMM.
///
/// Every path is the dense kernel reached through index maps or contiguous sub-blocks:
/// - layer 1 (`gatedLinear`), N-side gating: only active rows of W (active columns of h) are packed and multiplied;
/// - layer 2 (`maskedInputLinear`), K-side sparsity: only active columns of h and V enter the inner product.
/// Inactive units cost no multiply-adds and no packing, so time scales with the active fraction r.
///
/// Like `GemmEngine`, calls on one engine must not overlap (scratch buffers are shared).
public final class SparseEngine: @unchecked Sendable {
    public let gemm: GemmEngine
    /// One serial engine per worker slot, for strategies that parallelise over groups or samples.
    let slotEngines: [GemmEngine]
    /// One compact output tile per worker slot (unit-major groups compute here, then scatter rows).
    let slotScratch: [AlignedBuffer]
    let scratch = AlignedBuffer()
    /// The packed gather's half-panel group of active rows, packed here call after call (`packWeightRows`).
    let gatherScratch: PackedWeights
    let maskedInput = AlignedBuffer()
    // This and the knobs below skip dynamic exclusivity checks (set between calls; see `GemmEngine`'s knobs).
    @exclusivity(unchecked) private var model: SparseCostModel?
    /// Where the calibrated cost model is cached (nil: no caching).
    public let costModelCache: SparseCostModelCache?

    /// Predicted sparse time must be below this fraction of the predicted dense-then-mask time for
    /// `.auto` to leave the dense path: the margin absorbs model error so `.auto` is never slower than dense.
    @exclusivity(unchecked) public var autoMargin = 0.9

    public init(gemm: GemmEngine, costModel: SparseCostModel? = nil,
                costModelCache: SparseCostModelCache? = .default) {
        self.gemm = gemm
        slotEngines = (0..<gemm.workerCount).map { _ in GemmEngine(kernels: gemm.kernels, executor: SerialExecutor()) }
        slotScratch = (0..<gemm.workerCount).map { _ in AlignedBuffer() }
        gatherScratch = gemm.makePackedScratch()
        model = costModel
        self.costModelCache = costModelCache
    }

    public var workerCount: Int { gemm.workerCount }

    /// The cost model for per-sample strategy choice: from the cache when this machine was seen
    /// before, else calibrated now by a short micro-measurement (~0.1 s) and cached.
    /// On several workers the calibration also times each per-sample strategy on them (`measureScaling`): one core's
    /// terms divided by the worker count misjudged how differently the strategies scale.
    public var costModel: SparseCostModel {
        if let m = model { return m }
        let m = SparseCostModel.loadOrCalibrate(kernels: gemm.kernels, workers: workerCount, cache: costModelCache) { base in
            guard self.workerCount > 1 else { return base }
            self.model = base  // the strategies consult it while they are timed
            var extended = base
            extended.scaling = self.measureScaling(base)
            return extended
        }
        model = m
        return m
    }

    // MARK: - Layer 1: N-side gating

    /// Which kernel a shared mask at batch ≥ 2 runs on (`.auto`: the cost model's cheaper prediction).
    @exclusivity(unchecked) public var sharedPath: SharedPathChoice = .auto
    /// Per-sample unit-major kernel: `.auto` (cost model), or forced (tests, `dgperf kernel --all-strategies`).
    @exclusivity(unchecked) public var unitMajorKernel: UnitMajorKernelChoice = .auto
    /// `hotColdSplit`: blocks used by at least this many samples run as the shared GEMM (nil: the cost model's split;
    /// tests force one).
    @exclusivity(unchecked) public var hotBlockUsers: Int? = nil

    /// How the packed gather splits n active units: `lead` units through the blocked GEMM (whole NR panels; the last
    /// one padded when nothing better applies), then with the AVX-512 narrow kernels a `tail` of up to NR/2 units on a
    /// half panel, or of NR + (up to NR/2) units — the lead's last panel taken along — on a panel and a half, and ≤ 8
    /// leftover units through the multi-sample gemv (`gemvRows`): padding 3 leftover units to a 32-wide panel costs 29
    /// columns of multiply-adds, the gemv streams x once for them instead.
    struct GatherPlan: Equatable { var lead: Int; var tail = 0; var gemvRows = 0 }

    func gatherPlan(active n: Int) -> GatherPlan {
        let nr = gemm.kernels.nr, rem = n % nr, base = n - rem
        guard gemm.hasHalfPanelKernel, rem > 0 else { return GatherPlan(lead: n) }
        let half = nr / 2
        let narrow: Int
        switch rem {
        case ...Self.gatherGemvRows: return GatherPlan(lead: base, gemvRows: rem)
        case ...half: narrow = rem
        case ...(half + Self.gatherGemvRows): narrow = half
        default: return GatherPlan(lead: n)
        }
        // A half panel after whole panels: the last whole panel joins it (one pass over x instead of two, three
        // FMAs per broadcast instead of one).
        let joined = base >= nr && gemm.kernels.panelAndHalfGemm != nil
        return GatherPlan(lead: joined ? base - nr : base, tail: joined ? nr + narrow : narrow, gemvRows: rem - narrow)
    }

    /// Leftover units the packed gather sends through the multi-sample gemv rather than a padded panel: at B = 256 the
    /// gemv ran ~57 GMAC/s against ~110 for the half-panel kernel, so up to 8 rows of it cost less than 16 columns.
    static let gatherGemvRows = 8

    /// Predicted seconds of the packed gather: its blocked GEMM, half panel and gemv parts.
    func predictGather(_ model: SparseCostModel, batch: Int, active n: Int, features d: Int) -> Double {
        let plan = gatherPlan(active: n)
        var t = plan.lead > 0 ? model.gemmSeconds(m: batch, n: plan.lead, k: d) : 0
        if plan.tail > 0 {
            let nr = gemm.kernels.nr
            t += model.gemmSeconds(m: batch, n: plan.tail, k: d, panelWidth: plan.tail > nr ? nr + nr / 2 : nr / 2)
        }
        if plan.gemvRows > 0 { t += model.multiGemvTailSeconds(m: batch, n: plan.gemvRows, k: d) }
        return t
    }

    /// The shared-mask kernel (batch ≥ 2) the cost model predicts fastest: the gathered-pack GEMM re-packs the active
    /// rows of W per call (∝ active·D, amortised over many rows: large batches); weight rows read W in place but pay
    /// padded sample panels and a transposed store (medium batches, low r); the multi-sample gemv reads W once at
    /// dot-product speed (a few samples).
    func cheapestSharedPath(batch: Int, active: Int, features: Int) -> SharedPathChoice {
        predictShared(costModel, batch: batch, active: active, features: features).choice
    }

    /// The shared-mask kernel the model predicts fastest and its predicted seconds on one worker.
    func predictShared(_ model: SparseCostModel, batch: Int, active: Int, features: Int) -> (choice: SharedPathChoice, seconds: Double) {
        let candidates: [(SharedPathChoice, Double)] = [
            (.packedGather, predictGather(model, batch: batch, active: active, features: features)),
            (.weightRows, model.weightRowsSeconds(m: batch, n: active, k: features)),
            (.gemv, model.multiGemvSeconds(m: batch, n: active, k: features)),
        ]
        return candidates.min { $0.1 < $1.1 }!
    }

    /// Packs W (units × inFeatures, row-major) once for `gatedLinear(…, packed:)`: masks whose blocks are
    /// whole NR-unit panels then skip packing altogether (the dense baseline should use it too, to compare fairly).
    public func packWeights(_ w: UnsafePointer<Float>, units h: Int, inFeatures d: Int) throws -> PackedWeights {
        guard h >= 1 else { throw SparseError.badDimension(name: "units", value: h) }
        guard d >= 1 else { throw SparseError.badDimension(name: "inFeatures", value: d) }
        return gemm.packWeights(w, n: h, k: d, ldw: d)
    }

    /// h[b, u] = act(x[b, :]·W[u, :] + bias[u]) for the active (b, u) pairs of `mask`.
    ///
    /// - x: batch × inFeatures row-major; W: units × inFeatures row-major; bias: units (optional).
    /// - output: `.compact` → batch × mask.activeUnits.count (shared masks and `.all` only);
    ///   `.scattered` → batch × units, inactive entries written as 0.
    /// - strategy: per-sample masks only (shared masks have one best path); `.auto` asks the cost model.
    @discardableResult
    public func gatedLinear(input x: UnsafePointer<Float>, batch: Int, inFeatures d: Int,
                            weights w: UnsafePointer<Float>, bias: UnsafePointer<Float>?, units h: Int,
                            mask: GateMask, relu: Bool = true, layout: SparseLayout = .scattered,
                            strategy: PerSampleStrategy = .auto, packed: PackedWeights? = nil,
                            output: UnsafeMutablePointer<Float>) throws -> SparseReport {
        try validate(batch: batch, features: d, featuresName: "inFeatures", units: h, mask: mask, layout: layout)
        if let p = packed {
            guard p.n == h && p.k == d && p.nr == gemm.kernels.nr else {
                throw SparseError.weightsShape(what: "packed weights (\(p.n) units × \(p.k) features)", got: p.n * p.k, expected: h * d)
            }
        }
        let denseMACs = batch * h * d
        let epilogue = Epilogue(bias: bias, relu: relu)
        switch mask.kind {
        case .all:
            let cost = denseLayer1(x: x, batch: batch, d: d, w: w, h: h, epilogue: epilogue, packed: packed, out: output)
            return SparseReport(strategy: .dense, cost: CostBreakdown(useful: cost), denseMACs: denseMACs,
                                activePairs: batch * h)
        case .shared:
            return mask.activeUnits.withUnsafeBufferPointer { units in
                sharedLayer1(x: x, batch: batch, d: d, w: w, bias: bias, h: h, units: units, relu: relu,
                             layout: layout, packed: packed, out: output, denseMACs: denseMACs)
            }
        case .perSample:
            if batch == 1 && strategy == .auto {
                // One sample's mask is a shared mask: its paths (runs over contiguous rows, whole pre-packed panels)
                // beat the per-sample strategies' batch-1 forms (row gemv per run), by up to 1.6× at G = 64.
                var units: [Int32] = []
                mask.bits.withUnsafeBufferPointer { row in
                    forEachRun(row.baseAddress!, blocks: mask.blockCount, granularity: mask.granularity, units: h) { s, len in
                        for u in s..<(s + len) { units.append(Int32(u)) }
                    }
                }
                return units.withUnsafeBufferPointer { u in
                    sharedLayer1(x: x, batch: 1, d: d, w: w, bias: bias, h: h, units: u, relu: relu,
                                 layout: layout, packed: packed, out: output, denseMACs: denseMACs)
                }
            }
            return perSampleLayer1(x: x, batch: batch, d: d, w: w, bias: bias, h: h, mask: mask, relu: relu,
                                   strategy: strategy, packed: packed, out: output)
        }
    }

    func denseLayer1(x: UnsafePointer<Float>, batch: Int, d: Int, w: UnsafePointer<Float>, h: Int,
                     epilogue: Epilogue, packed: PackedWeights?, out: UnsafeMutablePointer<Float>) -> KernelCost {
        if let p = packed {
            return gemm.gemm(m: batch, a: .rowMajor(x, ld: d), packed: p, c: OutputOperand(base: out, rowStride: h), epilogue: epilogue)
        }
        return gemm.gemm(m: batch, n: h, k: d, a: .rowMajor(x, ld: d), b: .rowMajor(w, ld: d, transposed: true),
                  c: OutputOperand(base: out, rowStride: h), epilogue: epilogue)
    }

    func sharedLayer1(x: UnsafePointer<Float>, batch: Int, d: Int, w: UnsafePointer<Float>,
                              bias: UnsafePointer<Float>?, h: Int, units: UnsafeBufferPointer<Int32>, relu: Bool,
                              layout: SparseLayout, packed: PackedWeights?, out: UnsafeMutablePointer<Float>,
                              denseMACs: Int) -> SparseReport {
        let n = units.count
        let pairs = batch * n
        let useful = KernelCost(macs: pairs * d, bytesRead: 4 * (batch * d + n * d), bytesWritten: 4 * pairs)
        var overhead = KernelCost(bytesRead: 4 * n)  // the index map
        if n == h {  // every unit on: the dense call, no maps
            _ = denseLayer1(x: x, batch: batch, d: d, w: w, h: h, epilogue: Epilogue(bias: bias, relu: relu),
                            packed: packed, out: out)
            return SparseReport(strategy: .dense, cost: CostBreakdown(useful: useful), denseMACs: denseMACs, activePairs: pairs)
        }
        let runs = Runs(units)
        let nr = gemm.kernels.nr
        let wholePanels = packed != nil && (0..<runs.count).allSatisfy {
            runs.start[$0] % nr == 0 && ((runs.start[$0] + runs.length[$0]) % nr == 0 || runs.start[$0] + runs.length[$0] == h)
        }
        // Which path runs (the packed gather computes compact tiles, then scatters them with the zeros in one pass).
        let choice: SharedPathChoice? = n == 0 || wholePanels || batch == 1 ? nil
            : sharedPath == .auto ? cheapestSharedPath(batch: batch, active: n, features: d) : sharedPath
        if layout == .scattered {
            overhead.bytesWritten += 4 * batch * (h - n)
            if choice != .packedGather {
                // Inactive columns are 0; the active ones are written in place below.
                overSampleBlocks(batch, unit: 1, parallel: batch * h >= Self.rowPassParallelFloats) { rows, _ in
                    if runs.count * 4 > n {
                        (out + rows.lowerBound * h).update(repeating: 0, count: rows.count * h)  // short runs: one fill
                    } else {
                        for b in rows { self.zeroGaps(out + b * h, runs: runs, width: h) }
                    }
                }
            }
        }
        guard n > 0 else {
            return SparseReport(strategy: .sharedGather, cost: CostBreakdown(useful: useful, overhead: overhead),
                                denseMACs: denseMACs, activePairs: 0)
        }
        if let p = packed, wholePanels {
            // Whole panels: run only the active panels of the pre-packed weights, no packing of W at all.
            var panels: [Int32] = []
            for r in 0..<runs.count {
                for q in (runs.start[r] / nr)..<((runs.start[r] + runs.length[r] + nr - 1) / nr) { panels.append(Int32(q)) }
            }
            let dst = layout == .scattered ? out : scratch.reserve(batch * h)
            panels.withUnsafeBufferPointer { pp in
                _ = gemm.gemm(m: batch, a: .rowMajor(x, ld: d), packed: p, panels: pp,
                              c: OutputOperand(base: dst, rowStride: h), epilogue: Epilogue(bias: bias, relu: relu))
            }
            if layout == .compact {
                for b in 0..<batch {
                    for r in 0..<runs.count {
                        (out + b * n + runs.offset[r]).update(from: dst + b * h + runs.start[r], count: runs.length[r])
                    }
                }
                overhead.bytesRead += 4 * pairs
                overhead.bytesWritten += 4 * pairs
            }
            return SparseReport(strategy: .sharedPanels, cost: CostBreakdown(useful: useful, overhead: overhead),
                                denseMACs: denseMACs, activePairs: pairs)
        }
        if batch == 1 {
            if runs.count * 4 > n {
                // Short runs (unit masks): the gathered-row gemv takes four listed rows at a time.
                let indexed = gemm.kernels.indexedGemv
                let compact = layout == .compact
                let body: (Range<Int>, Int) -> Void = { range, _ in
                    indexed(range.count, d, w, d, units.baseAddress! + range.lowerBound, x,
                            compact ? out + range.lowerBound : out, !compact, bias, relu)
                }
                if workerCount > 1 && n * d >= gemm.parallelThresholdMACs * 2 {
                    gemm.executor.parallelFor(n, grain: 64, body)
                } else {
                    body(0..<n, 0)
                }
            } else {
                // Matrix-vector products straight over contiguous weight rows (whole blocks feed the gemv kernel).
                runsGemv(x: x, d: d, w: w, bias: bias, relu: relu, runs: runs, out: out, compact: layout == .compact)
            }
            return SparseReport(strategy: .sharedRuns, cost: CostBreakdown(useful: useful, overhead: overhead),
                                denseMACs: denseMACs, activePairs: pairs)
        }
        if choice == .gemv {
            // A few samples: each group of four active rows of W meets every sample while it is in L1.
            let compact = layout == .compact
            let multi = gemm.kernels.indexedGemvMulti
            let body: (Range<Int>, Int) -> Void = { range, _ in
                multi(range.count, d, w, d, units.baseAddress! + range.lowerBound, batch, x, d,
                      compact ? out + range.lowerBound : out, compact ? n : h, !compact, bias, relu)
            }
            if workerCount > 1 && batch * n * d >= gemm.parallelThresholdMACs * 2 {
                gemm.executor.parallelFor(n, grain: 64, body)
            } else {
                body(0..<n, 0)
            }
            return SparseReport(strategy: .sharedGemv, cost: CostBreakdown(useful: useful, overhead: overhead),
                                denseMACs: denseMACs, activePairs: pairs)
        }
        if choice == .weightRows {
            // W's active rows read in place (no packing of W); x packed once, outputs transposed into place.
            let compact = layout == .compact
            gemm.gemmWeightRows(m: batch, n: n, k: d, a: .rowMajor(x, ld: d), w: w, ldw: d, wRows: units.baseAddress,
                                c: OutputOperand(base: out, rowStride: compact ? n : h, colIndex: compact ? nil : units.baseAddress),
                                epilogue: Epilogue(bias: bias, biasIndex: units.baseAddress, relu: relu))
            overhead.bytesRead += 4 * batch * d    // x packed transposed
            overhead.bytesWritten += 4 * batch * d
            return SparseReport(strategy: .sharedWeightRows, cost: CostBreakdown(useful: useful, overhead: overhead),
                                denseMACs: denseMACs, activePairs: pairs)
        }
        // Packed gather: one GEMM on Wᵀ through a column map over the active rows (its blocked loop packs only those,
        // KC × NR at a time while they are in L1: cost ∝ r, paying off at large batches where each packed float serves
        // many rows; x is read in place when the panels are few). With a half-panel kernel (AVX-512) a last group of
        // ≤ 1.5·NR units is packed on its own and runs on the 6 × 16 or 6 × 48 kernels (48 active units cost 48
        // columns, not 64), ≤ 8 leftover units on the multi-sample gemv.
        // Tried on the 16-vCPU Xeon and not kept: packing all active rows whole-K first (in parallel) and running the
        // pre-packed GEMM on them. The pack wrote 0.65 MB (208 rows × 784) that other cores then read: 60–70 µs at
        // 16 threads (~4 floats/ns on one Zen 5 core, against 17 for a pack that stays in L2), so 256 × 784 × 208 took
        // 0.18–0.19 ms either way, and at B = 32 (few row items) it was 1.3–3× slower than packing in the loop.
        // (+16: the AVX-512 row expand below reads up to 15 floats past the last row.)
        let dst = layout == .compact ? out : scratch.reserve(batch * n + 16)
        let plan = gatherPlan(active: n)
        if plan.lead > 0 {
            gemm.gemm(m: batch, n: plan.lead, k: d, a: .rowMajor(x, ld: d),
                      b: MatrixOperand(base: w, rowStride: 1, colStride: d, colIndex: units.baseAddress),
                      c: OutputOperand(base: dst, rowStride: n), epilogue: Epilogue(bias: bias, biasIndex: units.baseAddress, relu: relu))
        }
        // The serial tail kernels split the samples over the workers in whole MR-row strips (a static half each
        // waited for the slower core); each worker runs its slot's serial engine.
        func overSamples(macs: Int, _ body: @escaping (Range<Int>, GemmEngine) -> Void) {
            let parallel = macs >= gemm.parallelThresholdMACs
            overSampleBlocks(batch, unit: gemm.kernels.mr, parallel: parallel) { range, slot in
                body(range, parallel && self.workerCount > 1 ? self.slotEngines[slot] : self.gemm)
            }
        }
        if plan.tail > 0 {
            let tailUnits = UnsafeBufferPointer(rebasing: units[plan.lead..<(plan.lead + plan.tail)])
            let packedTail = gatherScratch
            gemm.packWeightRows(w, rows: tailUnits, k: d, ldw: d, into: packedTail)
            let epilogue = Epilogue(bias: bias, biasIndex: tailUnits.baseAddress, relu: relu)
            let col = plan.lead, wide = plan.tail > nr
            overSamples(macs: batch * plan.tail * d) { range, engine in
                let a = MatrixOperand.rowMajor(x + range.lowerBound * d, ld: d)
                let c = OutputOperand(base: dst + range.lowerBound * n + col, rowStride: n)
                if wide {
                    engine.gemmPanelAndHalf(m: range.count, a: a, packed: packedTail, c: c, epilogue: epilogue)
                } else {
                    engine.gemmHalfPanel(m: range.count, a: a, packed: packedTail, firstUnit: 0, c: c, epilogue: epilogue)
                }
            }
        }
        if plan.gemvRows > 0 {
            let col = plan.lead + plan.tail, rows = units.baseAddress! + col, count = plan.gemvRows
            let multi = gemm.kernels.indexedGemvMulti
            overSamples(macs: batch * count * d) { range, _ in
                multi(count, d, w, d, rows, range.count, x + range.lowerBound * d, d, dst + range.lowerBound * n + col, n,
                      false, bias, relu)
            }
        }
        if layout == .scattered && gemm.kernels.isa == .avx512 && runs.count * 4 > n && 4 * n >= h {
            // Compact tiles (full micro-tiles, vector stores), then each output row expanded to full width sixteen
            // units at a time (vexpandps: the active ones in order, zeros between): with short runs and r ≥ 0.25 a
            // store per active unit took ~5 % of the layer at H = 2048, B = 256. Sparser rows or whole-block runs
            // keep the fill and copies below (at r ≈ 0.1 the expand of every chunk was slower than them).
            let chunks = (h + 15) / 16
            var masks = [UInt16](repeating: 0, count: chunks), offsets = [Int32](repeating: 0, count: chunks)
            for u in units { masks[Int(u) >> 4] |= 1 << (UInt16(u) & 15) }
            for c in 1..<max(chunks, 1) { offsets[c] = offsets[c - 1] + Int32(masks[c - 1].nonzeroBitCount) }
            let tmp = UnsafePointer(dst)
            masks.withUnsafeBufferPointer { m in offsets.withUnsafeBufferPointer { o in
                overSampleBlocks(batch, unit: 1, parallel: batch * h >= Self.rowPassParallelFloats) { rows, _ in
                    for b in rows { dg_expand_row_avx512(out + b * h, tmp + b * n, m.baseAddress!, o.baseAddress!, Int32(h)) }
                }
            } }
            overhead.bytesRead += 4 * pairs
            overhead.bytesWritten += 4 * pairs
        } else if layout == .scattered {
            // Compact tiles (full micro-tiles, vector stores), then each output row written once: zeros and runs.
            let tmp = UnsafePointer(dst)
            overSampleBlocks(batch, unit: 1, parallel: batch * h >= Self.rowPassParallelFloats) { rows, _ in
                for b in rows {
                    let row = out + b * h, src = tmp + b * n
                    if runs.count * 4 > n {
                        // Short runs (unit masks): element scatter beats a copy call per run.
                        row.update(repeating: 0, count: h)
                        for p in 0..<n { row[Int(units[p])] = src[p] }
                    } else {
                        self.zeroGaps(row, runs: runs, width: h)
                        for r in 0..<runs.count { (row + runs.start[r]).update(from: src + runs.offset[r], count: runs.length[r]) }
                    }
                }
            }
            overhead.bytesRead += 4 * pairs
            overhead.bytesWritten += 4 * pairs
        }
        return SparseReport(strategy: .sharedGather, cost: CostBreakdown(useful: useful, overhead: overhead),
                            denseMACs: denseMACs, activePairs: pairs)
    }

    /// y[run] = act(W[run, :]·x + bias[run]) for each run, split into pieces so several workers share long runs.
    func runsGemv(x: UnsafePointer<Float>, d: Int, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?, relu: Bool,
                  runs: Runs, out: UnsafeMutablePointer<Float>, compact: Bool) {
        let gemv = gemm.kernels.gemv
        let piece = 64
        var pieces: [(start: Int, length: Int, dst: Int)] = []
        for r in 0..<runs.count {
            var s = 0
            while s < runs.length[r] {
                let len = min(piece, runs.length[r] - s)
                let unit = runs.start[r] + s
                pieces.append((unit, len, compact ? runs.offset[r] + s : unit))
                s += len
            }
        }
        let body: (Range<Int>, Int) -> Void = { range, _ in
            for p in range {
                let (start, len, dst) = pieces[p]
                gemv(len, d, w + start * d, d, x, out + dst, 0, bias.map { $0 + start }, relu)
            }
        }
        if workerCount > 1 && runs.total * d >= gemm.parallelThresholdMACs * 2 {
            gemm.executor.parallelFor(pieces.count, grain: 1, body)
        } else {
            body(0..<pieces.count, 0)
        }
    }

    // MARK: - Layer 2: K-side sparsity

    /// y = h·Vᵀ + bias using only the active hidden columns of h and V.
    ///
    /// - h: batch × units (`.scattered`, any values in inactive columns — they are never read by the
    ///   sparse paths and are masked out by the dense one) or batch × activeUnits (`.compact`, shared masks).
    /// - V: outFeatures × units row-major; bias: outFeatures (optional); y: batch × outFeatures.
    /// - strategy: per-sample masks only; `.hotColdSplit` (a layer-1 strategy) asks the cost model here.
    @discardableResult
    public func maskedInputLinear(input hIn: UnsafePointer<Float>, layout: SparseLayout = .scattered, batch: Int,
                                  units h: Int, weights v: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                  outFeatures c: Int, mask: GateMask, strategy: PerSampleStrategy = .auto,
                                  output y: UnsafeMutablePointer<Float>) throws -> SparseReport {
        try validate(batch: batch, features: c, featuresName: "outFeatures", units: h, mask: mask, layout: layout)
        let denseMACs = batch * h * c
        let epilogue = Epilogue(bias: bias)
        switch mask.kind {
        case .all:
            let cost = gemm.gemm(m: batch, n: c, k: h, a: .rowMajor(hIn, ld: h), b: .rowMajor(v, ld: h, transposed: true),
                                 c: OutputOperand(base: y, rowStride: c), epilogue: epilogue)
            return SparseReport(strategy: .dense, cost: CostBreakdown(useful: cost), denseMACs: denseMACs, activePairs: batch * h)
        case .shared:
            let n = mask.activeUnits.count
            let useful = KernelCost(macs: batch * n * c, bytesRead: 4 * (batch * n + n * c), bytesWritten: 4 * batch * c)
            let strategy: SparseStrategy = n == h ? .dense : (batch == 1 ? .sharedRuns : .sharedGather)
            if n == 0 {
                for b in 0..<batch { for j in 0..<c { y[b * c + j] = bias.map { $0[j] } ?? 0 } }
            } else if n == h && layout == .scattered {
                gemm.gemm(m: batch, n: c, k: h, a: .rowMajor(hIn, ld: h), b: .rowMajor(v, ld: h, transposed: true),
                          c: OutputOperand(base: y, rowStride: c), epilogue: epilogue)
            } else {
                mask.activeUnits.withUnsafeBufferPointer { units in
                    // K map on both operands: A = h (compact: no map), B = Vᵀ with its rows (= V's columns) gathered.
                    let aOp: MatrixOperand = layout == .compact
                        ? .rowMajor(hIn, ld: n)
                        : MatrixOperand(base: hIn, rowStride: h, colStride: 1, colIndex: units.baseAddress)
                    if batch == 1 {
                        // Gather the active x entries, then one gemv per run of V's columns (contiguous, stride h).
                        let xs = scratch.reserve(n)
                        for p in 0..<n { xs[p] = aOp.element(0, p) }
                        let runs = Runs(units)
                        for j in 0..<c { y[j] = bias.map { $0[j] } ?? 0 }
                        for r in 0..<runs.count {
                            gemm.kernels.gemv(c, runs.length[r], v + runs.start[r], h, xs + runs.offset[r], y, 1, nil, false)
                        }
                    } else {
                        let bOp = MatrixOperand(base: v, rowStride: 1, colStride: h, rowIndex: units.baseAddress)
                        gemm.gemm(m: batch, n: c, k: n, a: aOp, b: bOp, c: OutputOperand(base: y, rowStride: c),
                                  epilogue: epilogue)
                    }
                }
            }
            return SparseReport(strategy: strategy, cost: CostBreakdown(useful: useful, overhead: KernelCost(bytesRead: 4 * n)),
                                denseMACs: denseMACs, activePairs: batch * n)
        case .perSample:
            return perSampleLayer2(h: hIn, batch: batch, units: h, v: v, bias: bias, c: c, mask: mask,
                                   strategy: strategy, y: y)
        }
    }

    // MARK: - Validation and helpers

    private func validate(batch: Int, features: Int, featuresName: String, units: Int, mask: GateMask,
                          layout: SparseLayout) throws {
        guard batch >= 1 else { throw SparseError.badDimension(name: "batch", value: batch) }
        guard features >= 1 else { throw SparseError.badDimension(name: featuresName, value: features) }
        guard units >= 1 else { throw SparseError.badDimension(name: "units", value: units) }
        if mask.kind != .all && mask.units != units {
            throw SparseError.maskUnitsMismatch(maskUnits: mask.units, layerUnits: units)
        }
        if mask.kind == .perSample {
            guard mask.batch == batch else { throw SparseError.maskBatchMismatch(maskBatch: mask.batch, batch: batch) }
            guard layout == .scattered else { throw SparseError.compactNeedsSharedMask }
        }
    }

    /// Runs `body(rows, slot)` over blocks of whole `unit`s of the batch's rows: with `parallel` (and workers) on the
    /// workers, work-stolen, about `WorkItems.itemsPerWorker` blocks each; otherwise all rows on the caller (slot 0).
    /// Every per-row stage of a parallel layer goes through it, or it becomes the layer's serial tail: a full-width
    /// output of 256 × 2048 zeroed and scattered on one thread took 0.24 ms at 16 threads on the Xeon VM, longer than
    /// the gathered GEMM itself.
    func overSampleBlocks(_ batch: Int, unit: Int, parallel: Bool, _ body: @escaping (Range<Int>, Int) -> Void) {
        if parallel && workerCount > 1 && batch > unit {
            gemm.executor.parallelForStealing(batch, unit: unit, blocksPerWorker: WorkItems.itemsPerWorker, body)
        } else {
            body(0..<batch, 0)
        }
    }

    /// Row passes (zeroing, scattering) over at least this many output floats run on the workers.
    static let rowPassParallelFloats = 1 << 16

    /// Zeroes the columns of one output row that no run covers.
    func zeroGaps(_ row: UnsafeMutablePointer<Float>, runs: Runs, width: Int) {
        var next = 0
        for r in 0..<runs.count {
            if runs.start[r] > next { (row + next).update(repeating: 0, count: runs.start[r] - next) }
            next = runs.start[r] + runs.length[r]
        }
        if width > next { (row + next).update(repeating: 0, count: width - next) }
    }
}

/// Maximal runs of consecutive unit ids in a sorted list: run r covers units start[r] ..< start[r]+length[r]
/// and sits at position offset[r] of the compact layout.
struct Runs {
    var start: [Int] = []
    var length: [Int] = []
    var offset: [Int] = []
    var count: Int { start.count }
    var total: Int { length.reduce(0, +) }

    init(_ units: UnsafeBufferPointer<Int32>) {
        var i = 0
        while i < units.count {
            var j = i + 1
            while j < units.count && units[j] == units[j - 1] + 1 { j += 1 }
            start.append(Int(units[i])); length.append(j - i); offset.append(i)
            i = j
        }
    }
}
