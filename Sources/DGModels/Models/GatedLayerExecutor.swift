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
    /// Active units over the whole batch. Bits are 0/1 bytes, so they sum sixteen at a time into byte lanes (flushed
    /// every 255 vectors; eight a word with a multiply took ~30 µs of every forward at B = 256, 2048 units, called
    /// twice); the partial last gate of each row is weighted by its width.
    var activeUnitsTotal: Int {
        bits.withUnsafeBytes { raw in
            let n = raw.count
            var total = 0, i = 0
            while i + 16 <= n {
                var lanes = SIMD16<UInt8>()
                let end = min(n - 15, i + 255 * 16)
                while i < end { lanes &+= raw.loadUnaligned(fromByteOffset: i, as: SIMD16<UInt8>.self); i += 16 }
                total &+= Int(SIMD16<UInt16>(truncatingIfNeeded: lanes).wrappedSum())
            }
            while i < n { total &+= raw[i] != 0 ? 1 : 0; i += 1 }
            var last = 0
            for r in 0..<batch where raw[r * gates + gates - 1] != 0 { last += 1 }
            return (total - last) * granularity + last * unitsIn(gate: gates - 1)
        }
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

/// Runs one (possibly masked) linear layer `out = x·Wᵀ + b` and accounts useful vs overhead vs wasted MACs.
///
/// This is the one place that decides how gated matmuls execute:
/// - output-side masks (a gated hidden layer, input unmasked) → `SparseEngine.gatedLinear`: shared masks gather
///   (or select whole pre-packed panels), per-sample masks go through the calibrated cost model
///   (dense-then-mask / unit-major / sample-major);
/// - input-side masks (the layer after a gated one) → `SparseEngine.maskedInputLinear` (K-side sparsity), except
///   for narrow layers (the classifier): after a shared mask their active inputs and weight columns are copied
///   compact and multiplied there; after a per-sample mask the dense product over the exact-zero inputs is faster;
/// - both sides masked (deep gated stacks) → the GEMM with index maps below (K gather for shared input masks,
///   dense over K with the zeros counted as wasted for per-sample input masks).
/// Weights are packed once per layer (`packed(_:n:k:)`), as any inference engine does; the dense baseline
/// (`DenseMLP`, `linearDense`) uses the same packed weights, so the comparison is like for like.
final class GatedLayerExecutor {
    let engine: GemmEngine
    let sparse: SparseEngine
    static let blockGatherMinimum = 16
    private var rowScratch: [Int32] = []
    /// Compact copies of a narrow layer's active inputs and weight columns (`k-gather-narrow`).
    private let kScratch = [AlignedBuffer(), AlignedBuffer()]
    /// Set by the owning model while profiled (see `PhaseProfiled`).
    var recorder: PhaseRecorder?
    private var packedCache: [PackKey: PackedWeights] = [:]

    private struct PackKey: Hashable {
        let address: UInt
        let n: Int
        let k: Int
    }

    init(engine: GemmEngine) {
        self.engine = engine
        sparse = SparseEngine(gemm: engine)
    }

    struct Result {
        var cost: CostBreakdown
        var strategy: String
        /// The output holds only the shared mask's active units, batch × their count (see `linear`'s `compactOutput`).
        var compactOutput = false
    }

    /// W (n×k row-major) packed for this engine's kernels, once per weight buffer. The weights must not change
    /// afterwards (inference models never mutate them).
    func packed(_ w: UnsafePointer<Float>, n: Int, k: Int) -> PackedWeights {
        let key = PackKey(address: UInt(bitPattern: w), n: n, k: k)
        if let p = packedCache[key] { return p }
        let p = engine.packWeights(w, n: n, k: k, ldw: k)
        packedCache[key] = p
        return p
    }

    /// Dense `out = x·Wᵀ + b` (ReLU optional) on pre-packed weights.
    func linearDense(x: UnsafePointer<Float>, batch: Int, inDim: Int, weight: UnsafePointer<Float>,
                     bias: UnsafePointer<Float>?, outDim: Int, relu: Bool, out: UnsafeMutablePointer<Float>) -> KernelCost {
        let c = OutputOperand(base: out, rowStride: outDim), e = Epilogue(bias: bias, relu: relu)
        if engine.takesNarrowPath(m: batch, n: outDim) {
            // Narrow layers (the 10-class output) take the engine's transposed path, which packs per call.
            return engine.gemm(m: batch, n: outDim, k: inDim, a: .rowMajor(x, ld: inDim),
                               b: .rowMajor(weight, ld: inDim, transposed: true), c: c, epilogue: e)
        }
        return engine.gemm(m: batch, a: .rowMajor(x, ld: inDim), packed: packed(weight, n: outDim, k: inDim), c: c, epilogue: e)
    }

    /// `out` is batch × outDim (full width; masked outputs are written as 0), or batch × active units when
    /// `Result.compactOutput`. `scale` multiplies live outputs (inverted-dropout scaling of the random control; 1
    /// otherwise).
    /// - compactOutput: the caller would take a shared mask's output compact (batch × active units) instead of full
    ///   width with zeros; honoured when this layer runs the sparse engine's gathered path (`Result.compactOutput`).
    /// - inputCompact: x is such a compact output (batch × the shared input mask's units); only the narrow layer after
    ///   a shared mask accepts it.
    func linear(x: UnsafePointer<Float>, batch: Int, inDim: Int, inMask: UnitMask,
                weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, outDim: Int, outMask: UnitMask,
                relu: Bool, scale: Float = 1, out: UnsafeMutablePointer<Float>, layer: Int = 0,
                compactOutput: Bool = false, inputCompact: Bool = false) -> Result {
        recorder?.begin(.gemm, layer: layer)
        let b = batch
        var inMask = inMask, outMask = outMask
        if b == 1, case .perSample(let p) = outMask { outMask = .shared(p.unitList(sample: 0)) }
        if b == 1, case .perSample(let p) = inMask { inMask = .shared(p.unitList(sample: 0)) }
        var result: Result? = nil, tookCompactInput = false
        switch (inMask, outMask) {
        case (.all, .all):
            result = Result(cost: CostBreakdown(useful: linearDense(x: x, batch: b, inDim: inDim, weight: weight, bias: bias,
                                                                    outDim: outDim, relu: relu, out: out)),
                            strategy: "dense")
        case (.all, _):
            var compact = false
            if compactOutput, case .shared(let u) = outMask, !u.isEmpty { compact = true }
            if let mask = gateMask(outMask, batch: b, units: outDim),
               let r = try? sparse.gatedLinear(input: x, batch: b, inFeatures: inDim, weights: weight, bias: bias,
                                               units: outDim, mask: mask, relu: relu, layout: compact ? .compact : .scattered,
                                               packed: packed(weight, n: outDim, k: inDim), output: out) {
                result = Result(cost: r.cost, strategy: r.strategy.rawValue, compactOutput: compact)
            }
        case (.perSample(let pin), .perSample):
            // A gated layer after a gated layer (per-sample on both sides): the inactive inputs are exact zeros (this
            // executor wrote them), so the sparse engine's per-sample strategies serve the output side as they do
            // after the input layer (dense over K; the input side's zeros count as wasted MACs). Before, this case was
            // always the dense product and a mask pass.
            if let mask = gateMask(outMask, batch: b, units: outDim),
               let r = try? sparse.gatedLinear(input: x, batch: b, inFeatures: inDim, weights: weight, bias: bias,
                                               units: outDim, mask: mask, relu: relu, layout: .scattered,
                                               packed: packed(weight, n: outDim, k: inDim), output: out) {
                let useful = usefulMACs(inputs: pin, outMask: outMask, batch: b, outDim: outDim)
                var cost = r.cost
                let executed = cost.useful.macs + cost.wasted.macs
                cost.useful.macs = useful
                cost.wasted.macs = executed - useful
                result = Result(cost: cost, strategy: "k-dense-" + r.strategy.rawValue)
            }
        case (.shared(let units), .all) where outDim * 2 < engine.kernels.nr && !units.isEmpty:
            // Narrow layer after a shared mask: only the active inputs. The active columns of x (b·|u| floats) and of
            // W (outDim·|u|) are copied into compact scratch, unless x arrived compact, then the engine's narrow path
            // runs on them (dot products; weight rows for a short k on one thread): the 10-class layer after 48 of 512
            // units at B = 256 took 22 µs as a dense product over the zero inputs, 17 µs through index maps (the
            // gathered pack is scalar), 10.6–10.9 µs as dot products and 7.5–9.1 µs with x compact; on weight rows
            // with x compact 4.0 µs (k = 51).
            let k = units.count
            let wc = kScratch[1].reserve(outDim * k)
            var xc = x
            units.withUnsafeBufferPointer { u in
                if !inputCompact {
                    let gathered = kScratch[0].reserve(b * k)
                    for i in 0..<b {
                        let src = x + i * inDim, dst = gathered + i * k
                        for j in 0..<k { dst[j] = src[Int(u[j])] }
                    }
                    xc = UnsafePointer(gathered)
                }
                for o in 0..<outDim {
                    let src = weight + o * inDim, dst = wc + o * k
                    for j in 0..<k { dst[j] = src[Int(u[j])] }
                }
            }
            let executed = linearDense(x: xc, batch: b, inDim: k, weight: wc, bias: bias, outDim: outDim, relu: relu, out: out)
            let copied = (inputCompact ? 0 : b * k) + outDim * k
            result = Result(cost: CostBreakdown(useful: executed, overhead: KernelCost(bytesRead: 4 * copied, bytesWritten: 4 * copied)),
                            strategy: inputCompact ? "k-compact-narrow" : "k-gather-narrow")
            tookCompactInput = inputCompact
        case (_, .all) where outDim * 2 < engine.kernels.nr:
            // Narrow layer after a gated one (the 10-class output): the masked inputs are exact zeros (this
            // executor wrote them), so the dense product is already correct, and on the transposed narrow path
            // it beats every K-gather (they run at matrix-vector speed). Zero-input MACs count as wasted.
            let executed = linearDense(x: x, batch: b, inDim: inDim, weight: weight, bias: bias, outDim: outDim,
                                       relu: relu, out: out)
            let liveInputs: Int
            switch inMask {
            case .all: liveInputs = b * inDim
            case .shared(let u): liveInputs = b * u.count
            case .perSample(let p): liveInputs = p.activeUnitsTotal
            }
            result = Result(cost: split(executed, useful: liveInputs * outDim), strategy: "k-dense-zero-inputs")
        case (_, .all) where !relu:
            if let mask = gateMask(inMask, batch: b, units: inDim),
               let r = try? sparse.maskedInputLinear(input: x, layout: .scattered, batch: b, units: inDim, weights: weight,
                                                     bias: bias, outFeatures: outDim, mask: mask, output: out) {
                result = Result(cost: r.cost, strategy: "k-" + r.strategy.rawValue)
            }
        default:
            break
        }
        precondition(!inputCompact || tookCompactInput, "a compact input reached a layer that cannot take it")
        let final = result ?? mappedLinear(x: x, batch: b, inDim: inDim, inMask: inMask, weight: weight, bias: bias,
                                           outDim: outDim, outMask: outMask, relu: relu, out: out)
        if scale != 1 {
            recorder?.begin(.activation, layer: layer)
            var width = outDim
            if final.compactOutput, case .shared(let u) = outMask { width = u.count }
            for i in 0..<(b * width) { out[i] *= scale }
            recorder?.end(.activation, layer: layer)
        }
        recorder?.end(.gemm, layer: layer, cost: final.cost.total)
        return final
    }

    /// The kernels' mask type for a model mask (nil for `.all`).
    private func gateMask(_ m: UnitMask, batch: Int, units: Int) -> GateMask? {
        switch m {
        case .all: return nil
        case .shared(let u): return try? GateMask.shared(activeBlocks: u, granularity: 1, units: units)
        case .perSample(let p): return try? GateMask.perSample(bits: p.bits, batch: batch, granularity: p.granularity, units: units)
        }
    }

    /// Both sides masked (or a case the sparse engine does not take): the GEMM with index maps.
    private func mappedLinear(x: UnsafePointer<Float>, batch b: Int, inDim: Int, inMask: UnitMask,
                              weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, outDim: Int, outMask: UnitMask,
                              relu: Bool, out: UnsafeMutablePointer<Float>) -> Result {
        let result: Result
        switch (inMask, outMask) {
        case (.perSample(let pin), _):
            // K side has per-sample zeros: dense over K; outputs per outMask.
            let cols = columns(outMask, outDim)
            let executed = runMapped(x: x, batch: b, inDim: inDim, kIndex: nil, weight: weight, bias: bias,
                                     outDim: outDim, nIndex: cols, relu: relu, out: out)
            let useful = usefulMACs(inputs: pin, outMask: outMask, batch: b, outDim: outDim)
            if case .perSample(let p) = outMask { zeroMasked(p, out: out, outDim: outDim) }
            result = Result(cost: split(executed, useful: useful), strategy: "dense-k")
        case (_, .all), (_, .shared):
            let k = kIndex(inMask)
            let executed = runMapped(x: x, batch: b, inDim: inDim, kIndex: k, weight: weight, bias: bias,
                                     outDim: outDim, nIndex: columns(outMask, outDim), relu: relu, out: out)
            let strategy: String
            if case .shared = outMask { strategy = "shared-gather" } else if k != nil { strategy = "k-gather" } else { strategy = "dense" }
            result = Result(cost: CostBreakdown(useful: executed), strategy: strategy)
        case (_, .perSample(let p)):
            let k = kIndex(inMask)
            if p.granularity >= GatedLayerExecutor.blockGatherMinimum {
                result = Result(cost: CostBreakdown(useful: blockGather(x: x, batch: b, inDim: inDim, kIndex: k, weight: weight,
                                                                         bias: bias, outDim: outDim, mask: p, relu: relu, out: out)),
                                strategy: "block-gather")
            } else {
                let executed = runMapped(x: x, batch: b, inDim: inDim, kIndex: k, weight: weight, bias: bias,
                                         outDim: outDim, nIndex: nil, relu: relu, out: out)
                zeroMasked(p, out: out, outDim: outDim)
                let kLive = k?.count ?? inDim
                var useful = 0
                for i in 0..<b { useful += p.activeUnits(sample: i) * kLive }
                result = Result(cost: split(executed, useful: useful), strategy: "dense-then-mask")
            }
        }
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

    /// Useful MACs of a layer whose input is masked per sample: each sample's live inputs × its live outputs.
    private func usefulMACs(inputs pin: PerSampleMask, outMask: UnitMask, batch b: Int, outDim: Int) -> Int {
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
        return useful
    }

    /// Executed work split into useful MACs and the rest (wasted); bytes stay with the useful part.
    private func split(_ executed: KernelCost, useful: Int) -> CostBreakdown {
        var u = executed; u.macs = useful
        return CostBreakdown(useful: u, wasted: KernelCost(macs: executed.macs - useful))
    }

    private func zeroMasked(_ p: PerSampleMask, out: UnsafeMutablePointer<Float>, outDim: Int) {
        for i in 0..<p.batch {
            for g in 0..<p.gates where p.bits[i * p.gates + g] == 0 {
                (out + i * outDim + g * p.granularity).update(repeating: 0, count: p.unitsIn(gate: g))
            }
        }
    }

    /// out = x[:, k]·W[n, k]ᵀ + b[n] with optional K and N index maps; outputs outside `nIndex` are 0.
    private func runMapped(x: UnsafePointer<Float>, batch: Int, inDim: Int, kIndex: [Int32]?,
                           weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, outDim: Int, nIndex: [Int32]?,
                           relu: Bool, out: UnsafeMutablePointer<Float>) -> KernelCost {
        if nIndex != nil { out.update(repeating: 0, count: batch * outDim) }
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
                             mask p: PerSampleMask, relu: Bool, out: UnsafeMutablePointer<Float>) -> KernelCost {
        out.update(repeating: 0, count: batch * outDim)
        var cost = KernelCost.zero
        let k = kIndex?.count ?? inDim
        if rowScratch.count < batch { rowScratch = [Int32](repeating: 0, count: batch) }
        for g in 0..<p.gates {
            var rows = 0
            for i in 0..<batch where p.bits[i * p.gates + g] != 0 { rowScratch[rows] = Int32(i); rows += 1 }
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
