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
    public var phaseRecorder: PhaseRecorder? {
        didSet { layerExecutor.recorder = phaseRecorder }
    }
    public private(set) var lastGateBits: [[UInt8]] = []

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
        var inMask = UnitMask.all, inputCompact = false
        // The last hidden layer's output feeds a narrow classifier, which reads a shared mask's units compact: the
        // hidden layer then skips zeroing and scattering its full-width output.
        let classifierTakesCompact = spec.classes * 2 < layerExecutor.engine.kernels.nr
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
                                         relu: true, scale: scale, out: out, layer: l,
                                         compactOutput: classifierTakesCompact && l == spec.hidden.count - 1,
                                         inputCompact: inputCompact)
            cost += r.cost
            notes["strategy.\(l)"] = r.strategy
            activeSum += activeFraction(mask, batch: batch, units: H)
            x = UnsafePointer(out)
            inMask = mask
            inputCompact = r.compactOutput
        }
        let r = layerExecutor.linear(x: x, batch: batch, inDim: dims[dims.count - 2], inMask: inMask,
                                     weight: network.param("output.weight").value, bias: network.param("output.bias").value,
                                     outDim: spec.classes, outMask: .all, relu: false, out: output, layer: spec.hidden.count,
                                     inputCompact: inputCompact)
        cost += r.cost
        notes["strategy.output"] = r.strategy
        return ForwardReport(cost: cost, activeFraction: activeSum / Double(spec.hidden.count), notes: notes)
    }

    private func activeFraction(_ m: UnitMask, batch: Int, units: Int) -> Double {
        switch m {
        case .all: return 1
        case .shared(let u): return Double(u.count) / Double(units)
        case .perSample(let p): return Double(p.activeUnitsTotal) / Double(batch * units)
        }
    }

    /// The layer's mask, the MACs spent deciding it, and its gate bits (batch × gates).
    ///
    /// Learned gates: `p = sigmoid(z/T) > tau` is decided as `z > T·logit(tau)` — the same mask without an
    /// exponential per gate (sigmoid is monotonic; min_keep ranks by z, which orders like p).
    /// Synthetic gates run the real predictor and threshold pass (their cost is the model's), then take a
    /// pre-drawn random mask of exactly the requested fraction; the random control only takes the mask. The
    /// masks are drawn once per batch size (a ring of four, rotated per call), so the RNG is never timed.
    private func buildMask(layer l: Int, input: UnsafePointer<Float>, batch: Int) throws -> (UnitMask, KernelCost, [UInt8]) {
        let G = network.gates(layer: l), H = spec.hidden[l], gr = network.granularity
        var bits: [UInt8]
        var cost = KernelCost.zero
        var shared: Bool
        switch masks {
        case .learnedGates:
            shared = network.gatePredictor == .staticLogits
            let z = gateLogits.reserve(batch * G)
            phaseRecorder?.begin(.gate, layer: l)
            cost = try predictGates(layer: l, input: input, batch: batch, into: z)
            phaseRecorder?.end(.gate, layer: l, cost: cost)
            bits = thresholdGates(z, count: batch * G)
            if spec.minKeep > 0 { applyMinKeep(z: z, bits: &bits, batch: batch, gates: G) }
        case .syntheticGates, .random:
            shared = spec.maskKind == .shared
            if masks == .syntheticGates {
                let z = gateLogits.reserve(batch * G)
                phaseRecorder?.begin(.gate, layer: l)
                cost = try predictGates(layer: l, input: input, batch: batch, into: z)
                phaseRecorder?.end(.gate, layer: l, cost: cost)
                decisionSink &+= thresholdGates(z, count: batch * G).count
            }
            bits = syntheticBits(layer: l, batch: batch, gates: G, shared: shared)
        }
        if shared || batch == 1 {
            var units: [Int32] = []
            for g in 0..<G where bits[g] != 0 { for j in (g * gr)..<min(H, (g + 1) * gr) { units.append(Int32(j)) } }
            if units.count == H { return (.all, cost, bits) }
            return (.shared(units), cost, bits)
        }
        return (.perSample(PerSampleMask(bits: bits, batch: batch, gates: G, granularity: gr, units: H)), cost, bits)
    }

    /// Keeps the threshold pass of synthetic gates observable (its result is replaced by the drawn mask).
    private var decisionSink = 0

    /// bits[i] = p_i > tau, computed on logits: z_i > T·logit(tau), into one array kept across calls (no batch × gates
    /// allocation per forward: 512 KB at B = 256, 2048 gates).
    private func thresholdGates(_ z: UnsafePointer<Float>, count: Int) -> [UInt8] {
        let T = spec.temperature, tau = spec.threshold
        let cut: Float = tau <= 0 ? -.infinity : (tau >= 1 ? .infinity : Float(T * log(tau / (1 - tau))))
        if thresholdBits.count != count { thresholdBits = [UInt8](repeating: 0, count: count) }
        let executor = layerExecutor.engine.executor
        thresholdBits.withUnsafeMutableBufferPointer { buf in
            let out = buf.baseAddress!
            // On the workers for large masks: the pass reads B × gates logits (2 MB at B = 256, 2048 gates), ~55 µs on
            // one Zen 5 core and ~190 µs on the Xeon VM, serial while 15 workers waited.
            let grain = count >= 1 << 16 ? 1 << 14 : count
            executor.parallelFor(count, grain: grain) { range, _ in
                for i in range { out[i] = z[i] > cut ? 1 : 0 }
            }
        }
        return thresholdBits
    }
    private var thresholdBits: [UInt8] = []

    /// min_keep guard: samples with fewer than k gates on get their k highest-logit gates (as in training).
    private func applyMinKeep(z: UnsafePointer<Float>, bits: inout [UInt8], batch: Int, gates: Int) {
        let m = gateRank.reserve(batch * gates)
        for i in 0..<(batch * gates) { m[i] = Float(bits[i]) }
        applyMinKeepGuard(p: z, m: m, batch: batch, gates: gates, minKeep: spec.minKeep)
        for i in 0..<(batch * gates) { bits[i] = m[i] != 0 ? 1 : 0 }
    }

    private var drawnMasks: [Int: [[UInt8]]] = [:]
    private var drawCounter = 0

    /// A pre-drawn mask with exactly round(r·G) gates on per sample (or one row repeated when shared).
    private func syntheticBits(layer l: Int, batch: Int, gates G: Int, shared: Bool) -> [UInt8] {
        let key = batch &* 64 &+ l
        if drawnMasks[key] == nil {
            let on = max(1, min(G, Int((spec.activeFraction * Double(G)).rounded())))
            drawnMasks[key] = (0..<4).map { _ in
                var bits = [UInt8](repeating: 0, count: batch * G)
                var order = Array(0..<G)
                for i in 0..<(shared ? 1 : batch) {
                    for t in 0..<on {  // partial Fisher–Yates: the first `on` entries are a uniform random subset
                        let j = t + Int(rng.next() % UInt64(G - t))
                        order.swapAt(t, j)
                        bits[i * G + order[t]] = 1
                    }
                }
                if shared { for i in 1..<max(batch, 1) { for g in 0..<G { bits[i * G + g] = bits[g] } } }
                return bits
            }
        }
        drawCounter &+= 1
        return drawnMasks[key]![drawCounter % 4]
    }

    /// Gate logits into `z` (batch × gates); returns the predictor's work (overhead).
    private func predictGates(layer l: Int, input: UnsafePointer<Float>, batch: Int, into z: UnsafeMutablePointer<Float>) throws -> KernelCost {
        let D = spec.dims[l], G = network.gates(layer: l)
        switch network.gatePredictor {
        case .staticLogits:
            let s = network.param("gate.\(l).logits").value
            for i in 0..<batch { (z + i * G).update(from: s, count: G) }
            return .zero
        case .full:
            return layerExecutor.linearDense(x: input, batch: batch, inDim: D, weight: network.param("gate.\(l).weight").value,
                                             bias: network.param("gate.\(l).bias").value, outDim: G, relu: false, out: z)
        case .lowRank(let r):
            let t = gateRank.reserve(batch * max(r, G))
            let c1 = layerExecutor.linearDense(x: input, batch: batch, inDim: D, weight: network.param("gate.\(l).down").value,
                                               bias: nil, outDim: r, relu: false, out: t)
            let c2 = layerExecutor.linearDense(x: t, batch: batch, inDim: r, weight: network.param("gate.\(l).up").value,
                                               bias: network.param("gate.\(l).bias").value, outDim: G, relu: false, out: z)
            return c1 + c2
        }
    }
}

/// Switch-MoE inference on `MoEEngine`: router (overhead), top-k with capacity (rank-major, token order — the
/// same plan as training's `RoutingPlan`), per-expert GEMM pairs on gathered rows with pre-packed expert weights,
/// weighted combine. Tokens dropped at every choice get no expert output (counted in notes).
public final class SwitchMoEMLP: InferenceModel, PhaseProfiled {
    public let spec: ModelSpec
    let network: Network
    let engine: GemmEngine
    private let moe: MoEEngine
    private let weights: MoEWeights
    private let packed: MoEPackedWeights
    private let config: MoEConfig
    /// Profiled inside `MoEEngine`: router → gate, dispatch → mask, expert GEMMs → gemm, combine.
    public var phaseRecorder: PhaseRecorder? {
        didSet { moe.recorder = phaseRecorder }
    }

    public init(network: Network, engine: GemmEngine) throws {
        self.network = network; spec = network.spec; self.engine = engine
        let D = spec.inputFeatures, C = spec.classes, E = spec.experts, He = spec.unitsPerExpert
        func stacked(_ name: (Int) -> String) -> [Float] { (0..<E).flatMap { network.param(name($0)).values } }
        do {
            weights = try MoEWeights(inFeatures: D, hidden: He, outFeatures: C, experts: E,
                                     router: network.param("router.weight").values, routerBias: network.param("router.bias").values,
                                     w1: stacked { "expert.\($0).w1" }, b1: stacked { "expert.\($0).b1" },
                                     w2: stacked { "expert.\($0).w2" }, b2: stacked { "expert.\($0).b2" })
            config = MoEConfig(experts: E, topK: spec.topK, capacityFactor: spec.capacityFactor, normalizeTopK: true)
            try config.validate()
        } catch {
            throw ModelError.invalidArgument("MoE model: \(error)")
        }
        moe = MoEEngine(gemm: engine)
        packed = moe.pack(weights)
    }

    public func denseCost(batch: Int) -> KernelCost { ModelCost.dense(spec: spec, batch: batch) }

    public func forward(input: UnsafePointer<Float>, batch: Int, output: UnsafeMutablePointer<Float>) throws -> ForwardReport {
        guard batch >= 1 else { throw ModelError.invalidArgument("batch must be ≥ 1 (got \(batch))") }
        let r: MoEReport
        do {
            r = try moe.forward(input: input, tokens: batch, weights: weights, config: config, packed: packed, output: output)
        } catch {
            throw ModelError.invalidArgument("MoE forward: \(error)")
        }
        let assigned = r.load.reduce(0, +)
        let active = Double(assigned * spec.unitsPerExpert) / Double(batch * spec.hidden[0])
        return ForwardReport(cost: r.cost, activeFraction: active,
                             notes: ["strategy": "expert-gather", "dropped": String(r.droppedAssignments),
                                     "droppedTokens": String(r.droppedTokens), "capacity": String(r.capacity)])
    }
}
