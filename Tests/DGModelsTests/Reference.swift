import DGKernels
import DGRuntime
import Foundation
@testable import DGModels

/// Float64 twin of every model family's forward pass and loss, written for clarity, not speed.
/// Parameters are Double copies of a `Network`'s tensors, so finite differences can perturb them.
struct ReferenceModel {
    var spec: ModelSpec
    var params: [String: [Double]]
    var predictor: GatePredictor
    var granularity: Int

    init(_ net: Network) {
        spec = net.spec; predictor = net.gatePredictor; granularity = net.granularity
        params = [:]
        for p in net.params { params[p.name] = p.values.map(Double.init) }
    }

    /// y (rows × out) = x (rows × in) · Wᵀ + b.
    static func linear(_ x: [Double], rows: Int, inDim: Int, _ w: [Double], _ b: [Double]?, outDim: Int) -> [Double] {
        var y = [Double](repeating: 0, count: rows * outDim)
        for i in 0..<rows {
            for j in 0..<outDim {
                var s = b?[j] ?? 0
                for k in 0..<inDim { s += x[i * inDim + k] * w[j * inDim + k] }
                y[i * outDim + j] = s
            }
        }
        return y
    }

    /// Gate probabilities p (rows × gates) for hidden layer l.
    func gateProbs(layer l: Int, input: [Double], rows: Int) -> [Double] {
        let D = spec.dims[l], G = (spec.hidden[l] + granularity - 1) / granularity
        var z: [Double]
        switch predictor {
        case .staticLogits:
            z = []; for _ in 0..<rows { z += params["gate.\(l).logits"]! }
        case .full:
            z = Self.linear(input, rows: rows, inDim: D, params["gate.\(l).weight"]!, params["gate.\(l).bias"], outDim: G)
        case .lowRank(let r):
            let t = Self.linear(input, rows: rows, inDim: D, params["gate.\(l).down"]!, nil, outDim: r)
            z = Self.linear(t, rows: rows, inDim: r, params["gate.\(l).up"]!, params["gate.\(l).bias"], outDim: G)
        }
        return z.map { 1 / (1 + Foundation.exp(-$0 / spec.temperature)) }
    }

    /// Logits of the MLP families. `unitScale[l]` (rows × H) multiplies each hidden unit after ReLU (dropout /
    /// random masks incl. 1/keep scaling). For dg: `steMask` = (m0, p0) gives the straight-through surrogate
    /// h = a ⊙ (m0 + p − p0) whose true gradient is the STE gradient; nil → hard mask p > tau.
    /// Returns logits and Σp over all gates (for the budget).
    /// `gateInputs[l]` (detached gate inputs) replaces layer l's input as the gate predictor's input.
    func mlpLogits(_ x: [Double], rows: Int, unitScale: [[Double]]? = nil, steMask: ([[Double]], [[Double]])? = nil,
                   hardMask: [[UInt8]]? = nil, gateInputs: [[Double]]? = nil) -> ([Double], Double) {
        mlpForward(x, rows: rows, unitScale: unitScale, steMask: steMask, hardMask: hardMask, gateInputs: gateInputs).0
    }

    func mlpForward(_ x: [Double], rows: Int, unitScale: [[Double]]? = nil, steMask: ([[Double]], [[Double]])? = nil,
                    hardMask: [[UInt8]]? = nil, gateInputs: [[Double]]? = nil) -> (([Double], Double), [[Double]]) {
        var h = x, psum = 0.0
        var layerInputs: [[Double]] = []
        let dims = spec.dims
        for l in 0..<spec.hidden.count {
            let D = dims[l], H = dims[l + 1]
            layerInputs.append(h)
            var a = Self.linear(h, rows: rows, inDim: D, params["hidden.\(l).weight"]!, params["hidden.\(l).bias"], outDim: H)
            a = a.map { max($0, 0) }
            if let s = unitScale?[l] { for i in a.indices { a[i] *= s[i] } }
            if spec.kind == .dg {
                let G = (H + granularity - 1) / granularity
                let p = gateProbs(layer: l, input: gateInputs?[l] ?? h, rows: rows)
                psum += p.reduce(0, +)
                for i in 0..<rows {
                    for j in 0..<H {
                        let g = i * G + j / granularity
                        let m: Double
                        if let (m0, p0) = steMask { m = m0[l][g] + p[g] - p0[l][g] }
                        else if let hm = hardMask { m = Double(hm[l][g]) }
                        else { m = p[g] > spec.threshold ? 1 : 0 }
                        a[i * H + j] *= m
                    }
                }
            }
            h = a
        }
        let logits = Self.linear(h, rows: rows, inDim: dims[dims.count - 2], params["output.weight"]!, params["output.bias"],
                                 outDim: spec.classes)
        return ((logits, psum), layerInputs)
    }

    static func crossEntropy(_ logits: [Double], labels: [Int32], classes: Int) -> Double {
        let rows = labels.count
        var loss = 0.0
        for i in 0..<rows {
            let r = Array(logits[(i * classes)..<((i + 1) * classes)])
            let mx = r.max()!
            let lse = mx + Foundation.log(r.reduce(0) { $0 + Foundation.exp($1 - mx) })
            loss += lse - r[Int(labels[i])]
        }
        return loss / Double(rows)
    }

    /// Switch-MoE logits plus the auxiliary losses (load balance, z-loss) with the Trainer's routing rules.
    func moe(_ x: [Double], rows B: Int, lbWeight: Double, zWeight: Double) -> (logits: [Double], aux: Double, dropped: Int) {
        let D = spec.inputFeatures, C = spec.classes, E = spec.experts, He = spec.unitsPerExpert, K = spec.topK
        let z = Self.linear(x, rows: B, inDim: D, params["router.weight"]!, params["router.bias"], outDim: E)
        var probs = [Double](repeating: 0, count: B * E), lse = [Double](repeating: 0, count: B)
        for t in 0..<B {
            let r = Array(z[(t * E)..<((t + 1) * E)]), mx = r.max()!
            let s = r.reduce(0) { $0 + Foundation.exp($1 - mx) }
            lse[t] = mx + Foundation.log(s)
            for e in 0..<E { probs[t * E + e] = Foundation.exp(r[e] - mx) / s }
        }
        let cap = RoutingPlan.capacity(batch: B, experts: E, topK: K, factor: spec.capacityFactor)
        var choice = [[Int]](repeating: [], count: B)
        for t in 0..<B {
            let order = (0..<E).sorted { probs[t * E + $0] > probs[t * E + $1] || (probs[t * E + $0] == probs[t * E + $1] && $0 < $1) }
            choice[t] = Array(order.prefix(K))
        }
        var count = [Int](repeating: 0, count: E), sel = [Int](repeating: 0, count: E)
        var out = [Double](repeating: 0, count: B * C)
        var dropped = 0
        for rank in 0..<K {
            for t in 0..<B {
                let e = choice[t][rank]
                sel[e] += 1
                guard count[e] < cap else { dropped += 1; continue }
                count[e] += 1
                var g = probs[t * E + e]
                if K == 2 { g /= probs[t * E + choice[t][0]] + probs[t * E + choice[t][1]] }
                let xt = Array(x[(t * D)..<((t + 1) * D)])
                let hid = Self.linear(xt, rows: 1, inDim: D, params["expert.\(e).w1"]!, params["expert.\(e).b1"], outDim: He).map { max($0, 0) }
                let y = Self.linear(hid, rows: 1, inDim: He, params["expert.\(e).w2"]!, params["expert.\(e).b2"], outDim: C)
                for j in 0..<C { out[t * C + j] += g * y[j] }
            }
        }
        var lb = 0.0
        for e in 0..<E {
            let f = Double(sel[e]) / Double(B * K)
            var pm = 0.0
            for t in 0..<B { pm += probs[t * E + e] }
            lb += f * pm / Double(B)
        }
        let zl = lse.reduce(0) { $0 + $1 * $1 } / Double(B)
        return (out, lbWeight * Double(E) * lb + zWeight * zl, dropped)
    }
}

/// Deterministic test inputs.
func randomInputs(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0..<n).map { _ in (rng.nextFloat() - 0.3) * scale }
}
func randomLabels(_ n: Int, classes: Int, seed: UInt64) -> [Int32] {
    var rng = SplitMix64(seed: seed)
    return (0..<n).map { _ in Int32(rng.next() % UInt64(classes)) }
}
func makeEngine(threads: Int = 1) -> GemmEngine {
    let kernels = try! KernelSet.select(.auto)
    return GemmEngine(kernels: kernels, executor: threads == 1 ? SerialExecutor() : ConcurrentPerformExecutor(workers: threads))
}
