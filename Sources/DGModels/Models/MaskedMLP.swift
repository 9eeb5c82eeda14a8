import DGKernels
import DGRuntime
import Glibc

/// MLP inference with a unit mask per hidden layer: DynamicGate (learned or synthetic gates) and the
/// random-structural control. Gate → mask → only the live units run (see `GatedLayerExecutor`).
public final class MaskedMLP: InferenceModel, PhaseProfiled {
    public enum MaskSource: Sendable {
        /// The trained gate predictor decides (DynamicGate).
        case learnedGates
        /// The gate predictor runs (its cost is real) but the mask is a random exact fraction (timing sweeps).
        case syntheticGates
        /// Random units at `spec.activeFraction`, outputs scaled by 1/r as in training (random control).
        case random
    }

    public let spec: ModelSpec
    let network: Network
    let masks: MaskSource
    private let layerExecutor: GatedLayerExecutor
    private var rng: SplitMix64
    private var hiddenOut: [AlignedBuffer]
    private let gateLogits = AlignedBuffer(), gateRank = AlignedBuffer()
    /// When true, `lastGateBits[l]` keeps the last call's gate-level mask (batch × gates) per hidden layer.
    public var recordMasks = false
    public private(set) var lastGateBits: [[UInt8]] = []
    public var phaseRecorder: PhaseRecorder? {
        didSet { layerExecutor.recorder = phaseRecorder }
    }

    public init(network: Network, engine: GemmEngine, masks: MaskSource, seed: UInt64) {
        self.network = network; spec = network.spec; self.masks = masks
        layerExecutor = GatedLayerExecutor(engine: engine)
        rng = SplitMix64(seed: seed &+ 0xA5A5)
        hiddenOut = spec.hidden.map { _ in AlignedBuffer() }
    }

    public var granularity: Int { network.granularity }
    public func gates(layer: Int) -> Int { network.gates(layer: layer) }

    public func denseCost(batch: Int) -> KernelCost { ModelCost.dense(spec: spec, batch: batch) }

    public func forward(input: UnsafePointer<Float>, batch: Int, output: UnsafeMutablePointer<Float>) throws -> ForwardReport {
        guard batch >= 1 else { throw ModelError.invalidArgument("batch must be ≥ 1 (got \(batch))") }
        let dims = spec.dims
        var cost = CostBreakdown.zero
        var notes: [String: String] = [:]
        var activeSum = 0.0
        var x = input
        var inMask = UnitMask.all
        if recordMasks { lastGateBits = [] }
        for l in 0..<spec.hidden.count {
            let D = dims[l], H = dims[l + 1]
            phaseRecorder?.begin(.mask, layer: l)
            let (mask, gateCost, bits) = try buildMask(layer: l, input: x, batch: batch)
            phaseRecorder?.end(.mask, layer: l)
            cost += CostBreakdown(overhead: gateCost)
            if recordMasks { lastGateBits.append(bits) }
            let out = hiddenOut[l].reserve(batch * H)
            let scale: Float = masks == .random ? Float(1 / spec.activeFraction) : 1
            let r = layerExecutor.linear(x: x, batch: batch, inDim: D, inMask: inMask,
                                         weight: network.param("hidden.\(l).weight").value,
                                         bias: network.param("hidden.\(l).bias").value, outDim: H, outMask: mask,
                                         relu: true, scale: scale, out: out, layer: l)
            cost += r.cost
            notes["strategy.\(l)"] = r.strategy
            activeSum += activeFraction(mask, batch: batch, units: H)
            x = UnsafePointer(out)
            inMask = mask
        }
        let r = layerExecutor.linear(x: x, batch: batch, inDim: dims[dims.count - 2], inMask: inMask,
                                     weight: network.param("output.weight").value, bias: network.param("output.bias").value,
                                     outDim: spec.classes, outMask: .all, relu: false, out: output, layer: spec.hidden.count)
        cost += r.cost
        notes["strategy.output"] = r.strategy
        return ForwardReport(cost: cost, activeFraction: activeSum / Double(spec.hidden.count), notes: notes)
    }

    private func activeFraction(_ m: UnitMask, batch: Int, units: Int) -> Double {
        switch m {
        case .all: return 1
        case .shared(let u): return Double(u.count) / Double(units)
        case .perSample(let p):
            var n = 0
            for i in 0..<batch { n += p.activeUnits(sample: i) }
            return Double(n) / Double(batch * units)
        }
    }

    /// The layer's mask, the MACs spent deciding it, and its gate bits (batch × gates).
    private func buildMask(layer l: Int, input: UnsafePointer<Float>, batch: Int) throws -> (UnitMask, KernelCost, [UInt8]) {
        let G = network.gates(layer: l), H = spec.hidden[l], gr = network.granularity
        var bits = [UInt8](repeating: 0, count: batch * G)
        var cost = KernelCost.zero
        var shared: Bool
        switch masks {
        case .learnedGates:
            shared = network.gatePredictor == .staticLogits
            let z = gateLogits.reserve(batch * G)
            phaseRecorder?.begin(.gate, layer: l)
            cost = try predictGates(layer: l, input: input, batch: batch, into: z)
            phaseRecorder?.end(.gate, layer: l, cost: cost)
            let T = Float(spec.temperature), tau = Float(spec.threshold)
            for i in 0..<(batch * G) { z[i] = 1 / (1 + expf(-z[i] / T)) }  // p, as in training
            let m = gateRank.reserve(batch * G)
            for i in 0..<(batch * G) { m[i] = z[i] > tau ? 1 : 0 }
            applyMinKeepGuard(p: z, m: m, batch: batch, gates: G, minKeep: spec.minKeep)
            for i in 0..<(batch * G) { bits[i] = m[i] != 0 ? 1 : 0 }
        case .syntheticGates, .random:
            shared = spec.maskKind == .shared
            if masks == .syntheticGates {
                phaseRecorder?.begin(.gate, layer: l)
                cost = try predictGates(layer: l, input: input, batch: batch, into: gateLogits.reserve(batch * G))
                phaseRecorder?.end(.gate, layer: l, cost: cost)
            }
            let on = max(1, min(G, Int((spec.activeFraction * Double(G)).rounded())))
            var order = Array(0..<G)
            for i in 0..<(shared ? 1 : batch) {
                for t in 0..<on {  // partial Fisher–Yates: the first `on` entries are a uniform random subset
                    let j = t + Int(rng.next() % UInt64(G - t))
                    order.swapAt(t, j)
                    bits[i * G + order[t]] = 1
                }
            }
            if shared { for i in 1..<max(batch, 1) { for g in 0..<G { bits[i * G + g] = bits[g] } } }
        }
        if shared || batch == 1 {
            var units: [Int32] = []
            for g in 0..<G where bits[g] != 0 { for j in (g * gr)..<min(H, (g + 1) * gr) { units.append(Int32(j)) } }
            if units.count == H { return (.all, cost, bits) }
            return (.shared(units), cost, bits)
        }
        return (.perSample(PerSampleMask(bits: bits, batch: batch, gates: G, granularity: gr, units: H)), cost, bits)
    }

    /// Gate logits into `z` (batch × gates); returns the predictor's work (overhead).
    private func predictGates(layer l: Int, input: UnsafePointer<Float>, batch: Int, into z: UnsafeMutablePointer<Float>) throws -> KernelCost {
        let D = spec.dims[l], G = network.gates(layer: l)
        let engine = layerExecutor.engine
        switch network.gatePredictor {
        case .staticLogits:
            let s = network.param("gate.\(l).logits").value
            for i in 0..<batch { (z + i * G).update(from: s, count: G) }
            return .zero
        case .full:
            return try engine.sgemm(transB: true, m: batch, n: G, k: D, a: input, lda: D, b: network.param("gate.\(l).weight").value,
                                    ldb: D, c: z, ldc: G, epilogue: Epilogue(bias: network.param("gate.\(l).bias").value))
        case .lowRank(let r):
            let t = gateRank.reserve(batch * max(r, G))
            let c1 = try engine.sgemm(transB: true, m: batch, n: r, k: D, a: input, lda: D,
                                      b: network.param("gate.\(l).down").value, ldb: D, c: t, ldc: r)
            let c2 = try engine.sgemm(transB: true, m: batch, n: G, k: r, a: t, lda: r, b: network.param("gate.\(l).up").value,
                                      ldb: r, c: z, ldc: G, epilogue: Epilogue(bias: network.param("gate.\(l).bias").value))
            return c1 + c2
        }
    }
}

/// Switch-MoE inference: router (overhead), top-k with capacity, per-expert GEMMs on gathered rows
/// (index maps), weighted combine. Tokens dropped at every choice get no expert output (counted in notes).
public final class SwitchMoEMLP: InferenceModel, PhaseProfiled {
    public let spec: ModelSpec
    let network: Network
    let engine: GemmEngine
    private let probs = AlignedBuffer(), hid = AlignedBuffer(), y = AlignedBuffer()
    public var phaseRecorder: PhaseRecorder?

    public init(network: Network, engine: GemmEngine) {
        self.network = network; spec = network.spec; self.engine = engine
    }

    public func denseCost(batch: Int) -> KernelCost { ModelCost.dense(spec: spec, batch: batch) }

    public func forward(input: UnsafePointer<Float>, batch: Int, output: UnsafeMutablePointer<Float>) throws -> ForwardReport {
        guard batch >= 1 else { throw ModelError.invalidArgument("batch must be ≥ 1 (got \(batch))") }
        let D = spec.inputFeatures, C = spec.classes, E = spec.experts, He = spec.unitsPerExpert
        let p = probs.reserve(batch * E)
        phaseRecorder?.begin(.gate, layer: 0)
        let routerCost = try engine.sgemm(transB: true, m: batch, n: E, k: D, a: input, lda: D,
                                          b: network.param("router.weight").value, ldb: D, c: p, ldc: E,
                                          epilogue: Epilogue(bias: network.param("router.bias").value))
        softmaxRows(p, rows: batch, cols: E)
        phaseRecorder?.end(.gate, layer: 0, cost: routerCost)
        phaseRecorder?.begin(.mask, layer: 0)
        let plan = RoutingPlan(probs: p, batch: batch, experts: E, topK: spec.topK, capacityFactor: spec.capacityFactor)
        phaseRecorder?.end(.mask, layer: 0)
        phaseRecorder?.begin(.combine, layer: 1)
        output.update(repeating: 0, count: batch * C)
        phaseRecorder?.end(.combine, layer: 1)
        let h = hid.reserve(plan.capacity * He), ye = y.reserve(plan.capacity * C)
        var useful = KernelCost.zero
        for e in 0..<E {
            let n = plan.tokens[e].count
            guard n > 0 else { continue }
            phaseRecorder?.begin(.gemm, layer: 0)
            let c1 = plan.tokens[e].withUnsafeBufferPointer { rows in
                engine.gemm(m: n, n: He, k: D, a: MatrixOperand(base: input, rowStride: D, colStride: 1, rowIndex: rows.baseAddress),
                            b: .rowMajor(network.param("expert.\(e).w1").value, ld: D, transposed: true),
                            c: OutputOperand(base: h, rowStride: He),
                            epilogue: Epilogue(bias: network.param("expert.\(e).b1").value, relu: true))
            }
            phaseRecorder?.end(.gemm, layer: 0, cost: c1)
            phaseRecorder?.begin(.gemm, layer: 1)
            let c2 = try engine.sgemm(transB: true, m: n, n: C, k: He, a: h, lda: He,
                                      b: network.param("expert.\(e).w2").value, ldb: He, c: ye, ldc: C,
                                      epilogue: Epilogue(bias: network.param("expert.\(e).b2").value))
            phaseRecorder?.end(.gemm, layer: 1, cost: c2)
            useful = useful + c1 + c2
            phaseRecorder?.begin(.combine, layer: 1)
            for r in 0..<n {
                let t = Int(plan.tokens[e][r]), g = plan.weights[e][r]
                for j in 0..<C { output[t * C + j] += g * ye[r * C + j] }
            }
            phaseRecorder?.end(.combine, layer: 1)
        }
        let hiddenTotal = spec.hidden[0]
        let active = Double(plan.assignedCount * He) / Double(batch * hiddenTotal)
        return ForwardReport(cost: CostBreakdown(useful: useful, overhead: routerCost), activeFraction: active,
                             notes: ["strategy": "expert-gather", "dropped": String(plan.droppedAssignments),
                                     "droppedTokens": String(plan.droppedTokens), "capacity": String(plan.capacity)])
    }
}
