import DGKernels
import DGRuntime

/// Which units of a layer are live. Gate-level for per-sample masks (G units per gate).
enum UnitMask {
    /// Every unit (dense).
    case all
    /// The same units for every sample (sorted unit indices).
    case shared([Int32])
    /// Per sample: `bits[i * gates + g]` ≠ 0 when gate g of sample i is on.
    case perSample(PerSampleMask)
}

struct PerSampleMask {
    var bits: [UInt8]
    var batch: Int
    var gates: Int
    var granularity: Int
    var units: Int

    func unitsIn(gate g: Int) -> Int { min(granularity, units - g * granularity) }
    func activeUnits(sample i: Int) -> Int {
        var n = 0
        for g in 0..<gates where bits[i * gates + g] != 0 { n += unitsIn(gate: g) }
        return n
    }
    /// Shared unit list for sample `i` (used at batch 1).
    func unitList(sample i: Int) -> [Int32] {
        var u: [Int32] = []
        for g in 0..<gates where bits[i * gates + g] != 0 {
            for j in (g * granularity)..<(g * granularity + unitsIn(gate: g)) { u.append(Int32(j)) }
        }
        return u
    }
}

/// Runs one (possibly masked) linear layer `out = x·Wᵀ + b` on the GEMM engine, computing only live units
/// where it can, and accounts useful vs wasted MACs.
///
/// This is the one place that decides how gated matmuls execute (the switch to DGKernels' SparseEngine /
/// MoEEngine happens here). Strategies today:
/// - shared masks → column map on W (outputs) and K-side maps on x and W (inputs): O(active);
/// - per-sample output masks at batch 1 → the same, with that sample's units;
/// - per-sample output masks with G ≥ `blockGatherMinimum` → per gate block, gather the samples that
///   have it on (row map on x, row scatter on out): O(active);
/// - otherwise dense-then-mask: the whole product, then zero the masked outputs (the masked MACs are `wasted`).
/// Per-sample *input* masks (the previous layer's) are zeros in x: the product runs over all K and the
/// zero part is counted as wasted.
final class GatedLayerExecutor {
    let engine: GemmEngine
    static let blockGatherMinimum = 16
    private var rowScratch: [Int32] = []
    /// Set by the owning model while profiled (see `PhaseProfiled`).
    var recorder: PhaseRecorder?

    init(engine: GemmEngine) { self.engine = engine }

    struct Result {
        var cost: CostBreakdown
        var strategy: String
    }

    /// `out` is batch × outDim (full width; masked outputs are written as 0). `scale` multiplies live outputs
    /// (inverted-dropout scaling of the random control; 1 otherwise).
    func linear(x: UnsafePointer<Float>, batch: Int, inDim: Int, inMask: UnitMask,
                weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, outDim: Int, outMask: UnitMask,
                relu: Bool, scale: Float = 1, out: UnsafeMutablePointer<Float>, layer: Int = 0) -> Result {
        recorder?.begin(.gemm, layer: layer)
        let b = batch
        var inMask = inMask, outMask = outMask
        if b == 1, case .perSample(let p) = outMask { outMask = .shared(p.unitList(sample: 0)) }
        if b == 1, case .perSample(let p) = inMask { inMask = .shared(p.unitList(sample: 0)) }
        let result: Result
        switch (inMask, outMask) {
        case (.perSample(let pin), _):
            // K side has per-sample zeros: dense over K; outputs per outMask.
            let cols = columns(outMask, outDim)
            let executed = runMapped(x: x, batch: b, inDim: inDim, kIndex: nil, weight: weight, bias: bias,
                                     outDim: outDim, nIndex: cols, relu: relu, out: out, layer: layer)
            var useful = 0
            for i in 0..<b {
                let liveOut: Int
                switch outMask {
                case .all: liveOut = outDim
                case .shared(let u): liveOut = u.count
                case .perSample(let p): liveOut = p.activeUnits(sample: i)
                }
                useful += pin.activeUnits(sample: i) * liveOut
            }
            if case .perSample(let p) = outMask { zeroMasked(p, out: out, outDim: outDim, layer: layer) }
            result = Result(cost: split(executed, useful: useful), strategy: "dense-k")
        case (_, .all), (_, .shared):
            let k = kIndex(inMask)
            let executed = runMapped(x: x, batch: b, inDim: inDim, kIndex: k, weight: weight, bias: bias,
                                     outDim: outDim, nIndex: columns(outMask, outDim), relu: relu, out: out, layer: layer)
            let strategy: String
            if case .shared = outMask { strategy = "shared-gather" } else if k != nil { strategy = "k-gather" } else { strategy = "dense" }
            result = Result(cost: CostBreakdown(useful: executed), strategy: strategy)
        case (_, .perSample(let p)):
            let k = kIndex(inMask)
            if p.granularity >= GatedLayerExecutor.blockGatherMinimum {
                result = Result(cost: CostBreakdown(useful: blockGather(x: x, batch: b, inDim: inDim, kIndex: k, weight: weight,
                                                                         bias: bias, outDim: outDim, mask: p, relu: relu, out: out,
                                                                         layer: layer)),
                                strategy: "block-gather")
            } else {
                let executed = runMapped(x: x, batch: b, inDim: inDim, kIndex: k, weight: weight, bias: bias,
                                         outDim: outDim, nIndex: nil, relu: relu, out: out, layer: layer)
                zeroMasked(p, out: out, outDim: outDim, layer: layer)
                let kLive = k?.count ?? inDim
                var useful = 0
                for i in 0..<b { useful += p.activeUnits(sample: i) * kLive }
                result = Result(cost: split(executed, useful: useful), strategy: "dense-then-mask")
            }
        }
        if scale != 1 {
            recorder?.begin(.activation, layer: layer)
            for i in 0..<(b * outDim) { out[i] *= scale }
            recorder?.end(.activation, layer: layer)
        }
        recorder?.end(.gemm, layer: layer, cost: result.cost.total)
        return result
    }

    private func kIndex(_ m: UnitMask) -> [Int32]? {
        if case .shared(let u) = m { return u }
        return nil
    }
    private func columns(_ m: UnitMask, _ n: Int) -> [Int32]? {
        if case .shared(let u) = m { return u }
        return nil
    }

    /// Executed work split into useful MACs and the rest (wasted); bytes stay with the useful part.
    private func split(_ executed: KernelCost, useful: Int) -> CostBreakdown {
        var u = executed; u.macs = useful
        return CostBreakdown(useful: u, wasted: KernelCost(macs: executed.macs - useful))
    }

    private func zeroMasked(_ p: PerSampleMask, out: UnsafeMutablePointer<Float>, outDim: Int, layer: Int) {
        recorder?.begin(.gather, layer: layer)
        defer { recorder?.end(.gather, layer: layer) }
        for i in 0..<p.batch {
            for g in 0..<p.gates where p.bits[i * p.gates + g] == 0 {
                (out + i * outDim + g * p.granularity).update(repeating: 0, count: p.unitsIn(gate: g))
            }
        }
    }

    /// out = x[:, k]·W[n, k]ᵀ + b[n] with optional K and N index maps; outputs outside `nIndex` are 0.
    private func runMapped(x: UnsafePointer<Float>, batch: Int, inDim: Int, kIndex: [Int32]?,
                           weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, outDim: Int, nIndex: [Int32]?,
                           relu: Bool, out: UnsafeMutablePointer<Float>, layer: Int) -> KernelCost {
        if nIndex != nil {
            recorder?.begin(.gather, layer: layer)
            out.update(repeating: 0, count: batch * outDim)
            recorder?.end(.gather, layer: layer)
        }
        let n = nIndex?.count ?? outDim, k = kIndex?.count ?? inDim
        guard n > 0 else { return .zero }
        if k == 0 {  // no live inputs: bias (+ReLU) only
            for i in 0..<batch {
                for jj in 0..<n {
                    let j = nIndex.map { Int($0[jj]) } ?? jj
                    let v = bias[j]
                    out[i * outDim + j] = relu ? max(v, 0) : v
                }
            }
            return .zero
        }
        return withOptional(kIndex) { kp in
            withOptional(nIndex) { np in
                engine.gemm(m: batch, n: n, k: k,
                            a: MatrixOperand(base: x, rowStride: inDim, colStride: 1, colIndex: kp),
                            b: MatrixOperand(base: weight, rowStride: 1, colStride: inDim, rowIndex: kp, colIndex: np),
                            c: OutputOperand(base: out, rowStride: outDim, colIndex: np),
                            epilogue: Epilogue(bias: bias, biasIndex: np, relu: relu))
            }
        }
    }

    /// Per gate block: gather the samples that have it on, one GEMM per block.
    private func blockGather(x: UnsafePointer<Float>, batch: Int, inDim: Int, kIndex: [Int32]?,
                             weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, outDim: Int,
                             mask p: PerSampleMask, relu: Bool, out: UnsafeMutablePointer<Float>, layer: Int) -> KernelCost {
        recorder?.begin(.gather, layer: layer)
        out.update(repeating: 0, count: batch * outDim)
        recorder?.end(.gather, layer: layer)
        var cost = KernelCost.zero
        let k = kIndex?.count ?? inDim
        if rowScratch.count < batch { rowScratch = [Int32](repeating: 0, count: batch) }
        for g in 0..<p.gates {
            var rows = 0
            recorder?.begin(.gather, layer: layer)
            for i in 0..<batch where p.bits[i * p.gates + g] != 0 { rowScratch[rows] = Int32(i); rows += 1 }
            recorder?.end(.gather, layer: layer)
            guard rows > 0 else { continue }
            let j0 = g * p.granularity, width = p.unitsIn(gate: g)
            if k == 0 {  // no live inputs: bias (+ReLU) only
                for r in 0..<rows {
                    for j in j0..<(j0 + width) { out[Int(rowScratch[r]) * outDim + j] = relu ? max(bias[j], 0) : bias[j] }
                }
                continue
            }
            cost = cost + rowScratch.withUnsafeBufferPointer { rp in
                withOptional(kIndex) { kp in
                    engine.gemm(m: rows, n: width, k: k,
                                a: MatrixOperand(base: x, rowStride: inDim, colStride: 1, rowIndex: rp.baseAddress, colIndex: kp),
                                b: MatrixOperand(base: weight + j0 * inDim, rowStride: 1, colStride: inDim, rowIndex: kp),
                                c: OutputOperand(base: out + j0, rowStride: outDim, rowIndex: rp.baseAddress),
                                epilogue: Epilogue(bias: bias + j0, relu: relu))
                }
            }
        }
        return cost
    }
}

/// Calls `body` with a pointer to the array's storage, or nil.
@inline(__always)
func withOptional<R>(_ a: [Int32]?, _ body: (UnsafePointer<Int32>?) -> R) -> R {
    guard let a else { return body(nil) }
    return a.withUnsafeBufferPointer { body($0.baseAddress) }
}
