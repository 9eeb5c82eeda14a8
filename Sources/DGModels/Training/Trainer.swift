import DGKernels
import DGRuntime
import Glibc

/// What one gradient computation saw.
public struct StepResult: Sendable {
    /// Total loss (CE + budget / auxiliary terms).
    public var loss: Double
    public var crossEntropy: Double
    public var correct: Int
    /// Mean fraction of gated units on (dg), kept (dropout/random), or expert units used (moe).
    public var activeFraction: Double
    public var droppedAssignments: Int
    public var droppedTokens: Int
}

/// Forward + backward + optimizer for every model family, on dgperf's GEMM.
///
/// Layer math (row-major, batch B): forward `Y = X·Wᵀ + b` (ReLU fused in the epilogue), backward
/// `dW = dYᵀ·X` (transA), `dX = dY·W`. DynamicGate: `p = sigmoid(z/T)`, `m = p > tau`, `h = a ⊙ m`;
/// straight-through: `∂L/∂p := ∂L/∂m = Σ_unit∈gate ∂L/∂h · a`, plus the budget `λ·mean(p)`.
/// Deterministic for a given seed and thread count (static work splits, seeded generators).
public final class Trainer {
    public let network: Network
    public let engine: GemmEngine
    public let config: TrainingConfig
    /// Generator for dropout / random-control masks.
    var maskRNG: SplitMix64
    /// Nanoseconds spent inside GEMM calls (for "fraction of time outside GEMMs").
    public private(set) var gemmNanos: UInt64 = 0
    private var adamStep = 0
    private var scratch: [String: AlignedBuffer] = [:]

    public init(network: Network, engine: GemmEngine, config: TrainingConfig) throws {
        try config.validate()
        self.network = network; self.engine = engine; self.config = config
        maskRNG = SplitMix64(seed: config.seed &+ 0x5EED)
    }

    public func resetGemmTimer() { gemmNanos = 0 }

    private func buf(_ name: String, _ count: Int) -> UnsafeMutablePointer<Float> {
        if let b = scratch[name] { return b.reserve(count) }
        let b = AlignedBuffer(capacity: count); scratch[name] = b
        return b.reserve(count)
    }
    /// Read access to a cached forward buffer (tests: dropout masks, gate probabilities and masks).
    public func cached(_ name: String, count: Int) -> [Float] {
        guard let b = scratch[name] else { return [] }
        return Array(UnsafeBufferPointer(start: b.pointer, count: min(count, b.capacity)))
    }

    private func mm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                    c: UnsafeMutablePointer<Float>, ldc: Int, epilogue: Epilogue = .none) throws {
        let t0 = monotonicNanos()
        try engine.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                         c: c, ldc: ldc, epilogue: epilogue)
        gemmNanos += monotonicNanos() - t0
    }

    /// db[j] = Σ_i dY[i, j].
    private func columnSums(_ dy: UnsafePointer<Float>, rows: Int, cols: Int, into db: UnsafeMutablePointer<Float>) {
        db.update(repeating: 0, count: cols)
        for i in 0..<rows {
            let r = dy + i * cols
            for j in 0..<cols { db[j] += r[j] }
        }
    }

    /// Softmax cross-entropy: returns (sum of losses, correct) and writes dL/dlogits (mean over batch) in place.
    private func softmaxCrossEntropy(_ logits: UnsafeMutablePointer<Float>, labels: UnsafePointer<Int32>,
                                     batch: Int, classes: Int) -> (Double, Int) {
        var loss = 0.0, correct = 0
        let invB = 1 / Float(batch)
        for i in 0..<batch {
            let r = logits + i * classes
            let y = Int(labels[i])
            var mx = r[0], arg = 0
            for j in 1..<classes where r[j] > mx { mx = r[j]; arg = j }
            if arg == y { correct += 1 }
            var s: Float = 0
            for j in 0..<classes { s += expf(r[j] - mx) }
            loss += Double(mx + logf(s) - r[y])
            let inv = 1 / s
            for j in 0..<classes { r[j] = (expf(r[j] - mx) * inv - (j == y ? 1 : 0)) * invB }
        }
        return (loss, correct)
    }

    // MARK: - Gradients

    /// Zero-cost-to-read gradient pass: forward, loss and backward for one minibatch; fills every `Param.grad`.
    /// `lambda` is the budget weight in effect (dg); other families ignore it.
    @discardableResult
    public func computeGradients(x: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int,
                                 lambda: Double = 0) throws -> StepResult {
        guard batch >= 1 else { throw ModelError.invalidArgument("batch must be ≥ 1 (got \(batch))") }
        if network.spec.kind == .moe { return try moeGradients(x: x, labels: labels, batch: batch) }
        return try mlpGradients(x: x, labels: labels, batch: batch, lambda: lambda)
    }

    private func mlpGradients(x: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch B: Int,
                              lambda: Double) throws -> StepResult {
        let spec = network.spec, dims = spec.dims, L = spec.hidden.count, C = spec.classes
        let kind = spec.kind
        let T = Float(spec.temperature), tau = Float(spec.threshold)
        let keepProb: Float = kind == .random ? Float(spec.activeFraction) : Float(1 - spec.dropoutRate)
        var inputs: [UnsafeMutablePointer<Float>?] = []  // layer inputs (nil = batch input x)
        var activeSum = 0.0, activeDen = 0.0, budgetSum = 0.0
        var totalGates = 0
        if kind == .dg { for l in 0..<L { totalGates += network.gates(layer: l) } }

        // Forward.
        var xin = UnsafeMutablePointer(mutating: x)
        for l in 0..<L {
            inputs.append(l == 0 ? nil : xin)
            let D = dims[l], H = dims[l + 1]
            let w = network.param("hidden.\(l).weight"), b = network.param("hidden.\(l).bias")
            let a = buf("a.\(l)", B * H)
            try mm(transB: true, m: B, n: H, k: D, a: xin, lda: D, b: w.value, ldb: D, c: a, ldc: H,
                   epilogue: Epilogue(bias: b.value, relu: true))
            var h = a
            switch kind {
            case .dense:
                activeSum += 1; activeDen += 1
            case .dropout, .random:
                h = buf("h.\(l)", B * H)
                let mask = buf("drop.\(l)", B * H)
                let scale = 1 / keepProb
                var kept = 0
                for i in 0..<(B * H) {
                    let keep = maskRNG.nextFloat() < keepProb
                    mask[i] = keep ? scale : 0
                    h[i] = a[i] * mask[i]
                    kept += keep ? 1 : 0
                }
                activeSum += Double(kept) / Double(B * H); activeDen += 1
            case .dg:
                h = buf("h.\(l)", B * H)
                let G = network.gates(layer: l), gr = network.granularity
                let p = buf("gp.\(l)", B * G), m = buf("gm.\(l)", B * G)
                try gateLogits(layer: l, input: xin, batch: B, into: p)
                var on = 0
                for i in 0..<(B * G) {
                    let pv = 1 / (1 + expf(-p[i] / T))
                    p[i] = pv; m[i] = pv > tau ? 1 : 0
                    budgetSum += Double(pv)
                }
                applyMinKeep(p: p, m: m, batch: B, gates: G)
                for i in 0..<B {
                    let mi = m + i * G, ai = a + i * H, hi = h + i * H
                    for j in 0..<H { hi[j] = ai[j] * mi[j / gr] }
                    for g in 0..<G where mi[g] != 0 { on += min(gr, H - g * gr) }
                }
                activeSum += Double(on) / Double(B * H); activeDen += 1
            case .moe: preconditionFailure("moe goes through moeGradients")
            }
            xin = h
        }
        let hLast = xin, HL = dims[L]
        let wo = network.param("output.weight"), bo = network.param("output.bias")
        let logits = buf("logits", B * C)
        try mm(transB: true, m: B, n: C, k: HL, a: hLast, lda: HL, b: wo.value, ldb: HL, c: logits, ldc: C,
               epilogue: Epilogue(bias: bo.value))
        let (ceSum, correct) = softmaxCrossEntropy(logits, labels: labels, batch: B, classes: C)
        let dlogits = logits

        // Backward.
        try mm(transA: true, m: C, n: HL, k: B, a: dlogits, lda: C, b: hLast, ldb: HL, c: wo.grad, ldc: HL)
        columnSums(dlogits, rows: B, cols: C, into: bo.grad)
        var dh = buf("dh.\(L - 1)", B * HL)
        try mm(m: B, n: HL, k: C, a: dlogits, lda: C, b: wo.value, ldb: HL, c: dh, ldc: HL)
        let budgetGrad = totalGates > 0 ? Float(lambda / Double(B * totalGates)) : 0
        for l in stride(from: L - 1, through: 0, by: -1) {
            let D = dims[l], H = dims[l + 1]
            let a = buf("a.\(l)", B * H)
            let layerInput: UnsafePointer<Float> = inputs[l].map { UnsafePointer($0) } ?? x
            let w = network.param("hidden.\(l).weight"), b = network.param("hidden.\(l).bias")
            var gateDz: UnsafeMutablePointer<Float>? = nil
            switch kind {
            case .dense: break
            case .dropout, .random:
                let mask = buf("drop.\(l)", B * H)
                for i in 0..<(B * H) { dh[i] *= mask[i] }
            case .dg:
                let G = network.gates(layer: l), gr = network.granularity
                let p = buf("gp.\(l)", B * G), m = buf("gm.\(l)", B * G), dz = buf("gdz.\(l)", B * G)
                for i in 0..<B {
                    let di = dh + i * H, ai = a + i * H, mi = m + i * G, zi = dz + i * G
                    zi.update(repeating: 0, count: G)
                    for j in 0..<H {
                        zi[j / gr] += di[j] * ai[j]   // ∂L/∂m (straight-through: used as ∂L/∂p)
                        di[j] *= mi[j / gr]
                    }
                    let pi = p + i * G
                    for g in 0..<G { zi[g] = (zi[g] + budgetGrad) * pi[g] * (1 - pi[g]) / T }
                }
                gateDz = dz
            case .moe: break
            }
            // ReLU backward (a > 0 ⇔ pre-activation > 0).
            for i in 0..<(B * H) where a[i] <= 0 { dh[i] = 0 }
            try mm(transA: true, m: H, n: D, k: B, a: dh, lda: H, b: layerInput, ldb: D, c: w.grad, ldc: D)
            columnSums(dh, rows: B, cols: H, into: b.grad)
            var dx: UnsafeMutablePointer<Float>? = nil
            if l > 0 {
                dx = buf("dh.\(l - 1)", B * D)
                try mm(m: B, n: D, k: H, a: dh, lda: H, b: w.value, ldb: D, c: dx!, ldc: D)
            }
            if let dz = gateDz { try gateBackward(layer: l, input: layerInput, batch: B, dz: dz) }
            if let dx { dh = dx }
        }
        let ce = ceSum / Double(B)
        let budget = totalGates > 0 ? lambda * budgetSum / Double(B * totalGates) : 0
        return StepResult(loss: ce + budget, crossEntropy: ce, correct: correct,
                          activeFraction: activeDen > 0 ? activeSum / activeDen : 1, droppedAssignments: 0, droppedTokens: 0)
    }

    /// Gate logits z (batch × gates) for hidden layer `layer` from its input.
    private func gateLogits(layer l: Int, input: UnsafePointer<Float>, batch B: Int, into z: UnsafeMutablePointer<Float>) throws {
        let D = network.spec.dims[l], G = network.gates(layer: l)
        switch network.gatePredictor {
        case .staticLogits:
            let s = network.param("gate.\(l).logits").value
            for i in 0..<B { (z + i * G).update(from: s, count: G) }
        case .full:
            try mm(transB: true, m: B, n: G, k: D, a: input, lda: D, b: network.param("gate.\(l).weight").value, ldb: D,
                   c: z, ldc: G, epilogue: Epilogue(bias: network.param("gate.\(l).bias").value))
        case .lowRank(let r):
            let t = buf("gt.\(l)", B * r)
            try mm(transB: true, m: B, n: r, k: D, a: input, lda: D, b: network.param("gate.\(l).down").value, ldb: D, c: t, ldc: r)
            try mm(transB: true, m: B, n: G, k: r, a: t, lda: r, b: network.param("gate.\(l).up").value, ldb: r,
                   c: z, ldc: G, epilogue: Epilogue(bias: network.param("gate.\(l).bias").value))
        }
    }

    /// Predictor gradients from dz (batch × gates). The predictor's input is detached (no gradient flows from a
    /// gate into the layer below): gates learn to read features, never to reshape them, and with tau = 0, λ = 0
    /// the main network's gradients are exactly the dense model's.
    private func gateBackward(layer l: Int, input: UnsafePointer<Float>, batch B: Int, dz: UnsafeMutablePointer<Float>) throws {
        let D = network.spec.dims[l], G = network.gates(layer: l)
        switch network.gatePredictor {
        case .staticLogits:
            columnSums(dz, rows: B, cols: G, into: network.param("gate.\(l).logits").grad)
        case .full:
            let w = network.param("gate.\(l).weight")
            try mm(transA: true, m: G, n: D, k: B, a: dz, lda: G, b: input, ldb: D, c: w.grad, ldc: D)
            columnSums(dz, rows: B, cols: G, into: network.param("gate.\(l).bias").grad)
        case .lowRank(let r):
            let down = network.param("gate.\(l).down"), up = network.param("gate.\(l).up")
            let t = buf("gt.\(l)", B * r), dt = buf("gdt.\(l)", B * r)
            try mm(transA: true, m: G, n: r, k: B, a: dz, lda: G, b: t, ldb: r, c: up.grad, ldc: r)
            columnSums(dz, rows: B, cols: G, into: network.param("gate.\(l).bias").grad)
            try mm(m: B, n: r, k: G, a: dz, lda: G, b: up.value, ldb: r, c: dt, ldc: r)
            try mm(transA: true, m: r, n: D, k: B, a: dt, lda: r, b: input, ldb: D, c: down.grad, ldc: D)
        }
    }

    /// min_keep guard: a sample with fewer than k gates on gets its k most probable gates on.
    private func applyMinKeep(p: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>, batch: Int, gates: Int) {
        applyMinKeepGuard(p: p, m: m, batch: batch, gates: gates, minKeep: network.spec.minKeep)
    }

    // MARK: - Switch-MoE

    private func moeGradients(x: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch B: Int) throws -> StepResult {
        let spec = network.spec, D = spec.inputFeatures, C = spec.classes, E = spec.experts, He = spec.unitsPerExpert
        let wr = network.param("router.weight"), br = network.param("router.bias")
        let probs = buf("router.p", B * E), lse = buf("router.lse", B)
        try mm(transB: true, m: B, n: E, k: D, a: x, lda: D, b: wr.value, ldb: D, c: probs, ldc: E,
               epilogue: Epilogue(bias: br.value))
        softmaxRows(probs, rows: B, cols: E, lse: lse)
        let plan = RoutingPlan(probs: probs, batch: B, experts: E, topK: spec.topK, capacityFactor: spec.capacityFactor)
        let out = buf("logits", B * C)
        out.update(repeating: 0, count: B * C)
        let cap = plan.capacity
        let hid = buf("moe.hid", E * cap * He), y = buf("moe.y", E * cap * C)
        for e in 0..<E {
            let n = plan.tokens[e].count
            guard n > 0 else { continue }
            let he = hid + e * cap * He, ye = y + e * cap * C
            let w1 = network.param("expert.\(e).w1"), b1 = network.param("expert.\(e).b1")
            let w2 = network.param("expert.\(e).w2"), b2 = network.param("expert.\(e).b2")
            try plan.tokens[e].withUnsafeBufferPointer { rows in
                let t0 = monotonicNanos()
                engine.gemm(m: n, n: He, k: D, a: MatrixOperand(base: x, rowStride: D, colStride: 1, rowIndex: rows.baseAddress),
                            b: .rowMajor(w1.value, ld: D, transposed: true), c: OutputOperand(base: he, rowStride: He),
                            epilogue: Epilogue(bias: b1.value, relu: true))
                gemmNanos += monotonicNanos() - t0
                try mm(transB: true, m: n, n: C, k: He, a: he, lda: He, b: w2.value, ldb: He, c: ye, ldc: C,
                       epilogue: Epilogue(bias: b2.value))
            }
            for r in 0..<n {
                let t = Int(plan.tokens[e][r]), g = plan.weights[e][r]
                for j in 0..<C { out[t * C + j] += g * ye[r * C + j] }
            }
        }
        let (ceSum, correct) = softmaxCrossEntropy(out, labels: labels, batch: B, classes: C)
        let dout = out
        // Auxiliary losses: load balance α·E·Σ f_e·P_e (f from top-k selections), z-loss β·mean(lse²).
        let alpha = Float(config.loadBalanceWeight), beta = Float(config.zLossWeight)
        var lb = 0.0, zl = 0.0
        let dprobs = buf("router.dp", B * E)
        for e in 0..<E {
            let f = Float(plan.selections[e]) / Float(B * spec.topK)
            var pm = 0.0
            for t in 0..<B { pm += Double(probs[t * E + e]); dprobs[t * E + e] = alpha * Float(E) * f / Float(B) }
            lb += Double(f) * pm / Double(B)
        }
        lb *= Double(alpha) * Double(E)
        for t in 0..<B { zl += Double(lse[t]) * Double(lse[t]) }
        zl *= Double(beta) / Double(B)
        // Experts backward.
        let dy = buf("moe.dy", cap * C), dhid = buf("moe.dhid", cap * He)
        let K = spec.topK
        let dgate = buf("moe.dgate", B * K)
        dgate.update(repeating: 0, count: B * K)
        for e in 0..<E {
            let n = plan.tokens[e].count
            let w1 = network.param("expert.\(e).w1"), b1 = network.param("expert.\(e).b1")
            let w2 = network.param("expert.\(e).w2"), b2 = network.param("expert.\(e).b2")
            guard n > 0 else {
                for p in [w1, b1, w2, b2] { p.grad.update(repeating: 0, count: p.count) }
                continue
            }
            let he = hid + e * cap * He, ye = y + e * cap * C
            for r in 0..<n {
                let t = Int(plan.tokens[e][r]), g = plan.weights[e][r]
                var dot: Float = 0
                for j in 0..<C { dy[r * C + j] = g * dout[t * C + j]; dot += dout[t * C + j] * ye[r * C + j] }
                dgate[t * K + Int(plan.ranks[e][r])] = dot
            }
            try mm(transA: true, m: C, n: He, k: n, a: dy, lda: C, b: he, ldb: He, c: w2.grad, ldc: He)
            columnSums(dy, rows: n, cols: C, into: b2.grad)
            try mm(m: n, n: He, k: C, a: dy, lda: C, b: w2.value, ldb: He, c: dhid, ldc: He)
            for i in 0..<(n * He) where he[i] <= 0 { dhid[i] = 0 }
            columnSums(dhid, rows: n, cols: He, into: b1.grad)
            plan.tokens[e].withUnsafeBufferPointer { rows in
                let t0 = monotonicNanos()
                engine.gemm(m: He, n: D, k: n, a: .rowMajor(dhid, ld: He, transposed: true),
                            b: MatrixOperand(base: x, rowStride: D, colStride: 1, rowIndex: rows.baseAddress),
                            c: OutputOperand(base: w1.grad, rowStride: D))
                gemmNanos += monotonicNanos() - t0
            }
        }
        // Combine weights → probabilities: top-1 uses p directly; top-2 uses g_a = p_a / (p_a + p_b).
        for t in 0..<B {
            if K == 1 {
                dprobs[t * E + plan.choices[t]] += dgate[t]
            } else {
                let a = plan.choices[2 * t], b = plan.choices[2 * t + 1]
                let pa = probs[t * E + a], pb = probs[t * E + b], s2 = (pa + pb) * (pa + pb)
                let da = dgate[2 * t], db = dgate[2 * t + 1]
                dprobs[t * E + a] += pb * (da - db) / s2
                dprobs[t * E + b] += pa * (db - da) / s2
            }
        }
        // Router backward: softmax Jacobian, plus the z-loss term.
        let dr = dprobs
        for t in 0..<B {
            let pt = probs + t * E, dt = dr + t * E
            var s: Float = 0
            for e in 0..<E { s += pt[e] * dt[e] }
            for e in 0..<E { dt[e] = pt[e] * (dt[e] - s) + beta * 2 * lse[t] * pt[e] / Float(B) }
        }
        try mm(transA: true, m: E, n: D, k: B, a: dr, lda: E, b: x, ldb: D, c: wr.grad, ldc: D)
        columnSums(dr, rows: B, cols: E, into: br.grad)
        let ce = ceSum / Double(B)
        let active = Double(plan.assignedCount) / Double(B * E)
        return StepResult(loss: ce + lb + zl, crossEntropy: ce, correct: correct, activeFraction: active,
                          droppedAssignments: plan.droppedAssignments, droppedTokens: plan.droppedTokens)
    }

    // MARK: - Optimizer

    /// One Adam (bias-corrected) or SGD+momentum step over every parameter, split across the engine's workers.
    public func applyUpdate() {
        adamStep += 1
        let lr = Float(config.learningRate)
        let executor = engine.executor
        switch config.optimizer {
        case .adam:
            let b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8
            let t = Double(adamStep)
            let step = Float(config.learningRate * (1 - pow(0.999, t)).squareRoot() / (1 - pow(0.9, t)))
            for p in network.params {
                let w = p.value, g = p.grad, m = p.state(1), v = p.state(2)
                let body: (Range<Int>, Int) -> Void = { r, _ in
                    adamUpdate(w: w, g: g, m: m, v: v, range: r, step: step, b1: b1, b2: b2, eps: eps)
                }
                if p.count >= 1 << 15 { executor.parallelFor(p.count, grain: 1 << 14, body) } else { body(0..<p.count, 0) }
            }
        case .sgd:
            let mu = Float(config.momentum)
            for p in network.params {
                let w = p.value, g = p.grad, v = p.state(1)
                let body: (Range<Int>, Int) -> Void = { r, _ in
                    for i in r { v[i] = mu * v[i] + g[i]; w[i] -= lr * v[i] }
                }
                if p.count >= 1 << 15 { executor.parallelFor(p.count, grain: 1 << 14, body) } else { body(0..<p.count, 0) }
            }
        }
    }
}

/// min_keep guard shared by training and inference: a sample with fewer than `minKeep` gates on
/// gets its `minKeep` most probable gates switched on.
func applyMinKeepGuard(p: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>, batch: Int, gates: Int, minKeep: Int) {
    let k = min(minKeep, gates)
    guard k > 0 else { return }
    for i in 0..<batch {
        let mi = m + i * gates, pi = p + i * gates
        var on = 0
        for g in 0..<gates where mi[g] != 0 { on += 1 }
        if on >= k { continue }
        let order = (0..<gates).sorted { pi[$0] > pi[$1] || (pi[$0] == pi[$1] && $0 < $1) }
        for g in order.prefix(k) { mi[g] = 1 }
    }
}

/// Adam on one range, eight lanes at a time (explicit SIMD: the loop body has a sqrt and a divide).
@inline(__always)
func adamUpdate(w: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>, m: UnsafeMutablePointer<Float>,
                v: UnsafeMutablePointer<Float>, range: Range<Int>, step: Float, b1: Float, b2: Float, eps: Float) {
    typealias V = SIMD8<Float>
    var i = range.lowerBound
    let end = range.upperBound
    while i + 8 <= end {
        let gi = UnsafeRawPointer(g + i).loadUnaligned(as: V.self)
        let mi = b1 * UnsafeRawPointer(m + i).loadUnaligned(as: V.self) + (1 - b1) * gi
        let vi = b2 * UnsafeRawPointer(v + i).loadUnaligned(as: V.self) + (1 - b2) * gi * gi
        let wi = UnsafeRawPointer(w + i).loadUnaligned(as: V.self) - step * mi / (vi.squareRoot() + eps)
        UnsafeMutableRawPointer(m + i).storeBytes(of: mi, as: V.self)
        UnsafeMutableRawPointer(v + i).storeBytes(of: vi, as: V.self)
        UnsafeMutableRawPointer(w + i).storeBytes(of: wi, as: V.self)
        i += 8
    }
    while i < end {
        let gi = g[i]
        let mi = b1 * m[i] + (1 - b1) * gi
        let vi = b2 * v[i] + (1 - b2) * gi * gi
        m[i] = mi; v[i] = vi
        w[i] -= step * mi / (vi.squareRoot() + eps)
        i += 1
    }
}
