import DGRuntime

/// One named parameter tensor with its gradient (and optimizer state, allocated on first use).
/// Raw pointers because every hot loop and GEMM call works on them directly.
public final class Param {
    public let name: String
    public let shape: [Int]
    public let count: Int
    public let value: UnsafeMutablePointer<Float>
    public let grad: UnsafeMutablePointer<Float>
    var moment1: UnsafeMutablePointer<Float>?
    var moment2: UnsafeMutablePointer<Float>?

    init(name: String, shape: [Int]) {
        self.name = name; self.shape = shape
        count = shape.reduce(1, *)
        value = .allocate(capacity: max(count, 1)); value.initialize(repeating: 0, count: max(count, 1))
        grad = .allocate(capacity: max(count, 1)); grad.initialize(repeating: 0, count: max(count, 1))
    }
    deinit {
        value.deallocate(); grad.deallocate(); moment1?.deallocate(); moment2?.deallocate()
    }
    public var values: [Float] { Array(UnsafeBufferPointer(start: value, count: count)) }
    public var grads: [Float] { Array(UnsafeBufferPointer(start: grad, count: count)) }
    func state(_ which: Int) -> UnsafeMutablePointer<Float> {
        if which == 1, let m = moment1 { return m }
        if which == 2, let v = moment2 { return v }
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        p.initialize(repeating: 0, count: max(count, 1))
        if which == 1 { moment1 = p } else { moment2 = p }
        return p
    }
}

/// The parameters of one model (any family) plus its spec. Training and trained inference share it.
///
/// Names: `hidden.L.weight` (out×in) / `hidden.L.bias`, `output.weight` / `output.bias`;
/// DynamicGate `gate.L.logits` (static), `gate.L.weight` (full, gates×in), `gate.L.down` (R×in) +
/// `gate.L.up` (gates×R), `gate.L.bias`; Switch-MoE `router.weight` (E×D) / `router.bias`,
/// `expert.E.w1` (He×D), `expert.E.b1`, `expert.E.w2` (C×He), `expert.E.b2`.
public final class Network {
    public let spec: ModelSpec
    public private(set) var params: [Param] = []
    private var byName: [String: Param] = [:]
    /// DynamicGate: predictor and gate granularity (units per gate).
    public let gatePredictor: GatePredictor
    public let granularity: Int

    /// Gate logits start at this value so a fresh gated model begins with every unit on (p ≈ 0.95 at T = 1).
    static let initialGateLogit: Float = 3

    public init(spec: ModelSpec, seed: UInt64) throws {
        try spec.validate()
        self.spec = spec
        if spec.kind == .dg {
            (gatePredictor, granularity) = try GatePredictor.parse(spec.gate, granularity: spec.granularity)
        } else {
            (gatePredictor, granularity) = (.staticLogits, max(1, spec.granularity))
        }
        var rng = SplitMix64(seed: seed)
        func add(_ name: String, _ shape: [Int], std: Float = 0, fill: Float = 0) {
            let p = Param(name: name, shape: shape)
            for i in 0..<p.count { p.value[i] = std > 0 ? rng.nextGaussian() * std : fill }
            params.append(p); byName[name] = p
        }
        func he(_ fanIn: Int) -> Float { Float((2.0 / Double(fanIn)).squareRoot()) }
        let dims = spec.dims
        if spec.kind == .moe {
            let d = spec.inputFeatures, he1 = spec.unitsPerExpert, c = spec.classes
            add("router.weight", [spec.experts, d], std: 0.01)
            add("router.bias", [spec.experts])
            for e in 0..<spec.experts {
                add("expert.\(e).w1", [he1, d], std: he(d)); add("expert.\(e).b1", [he1])
                add("expert.\(e).w2", [c, he1], std: Float((1.0 / Double(he1)).squareRoot())); add("expert.\(e).b2", [c])
            }
            return
        }
        for l in 0..<spec.hidden.count {
            add("hidden.\(l).weight", [dims[l + 1], dims[l]], std: he(dims[l])); add("hidden.\(l).bias", [dims[l + 1]])
            if spec.kind == .dg {
                let g = gates(layer: l)
                switch gatePredictor {
                case .staticLogits: add("gate.\(l).logits", [g], fill: Network.initialGateLogit)
                case .full:
                    add("gate.\(l).weight", [g, dims[l]], std: 0.01)
                    add("gate.\(l).bias", [g], fill: Network.initialGateLogit)
                case .lowRank(let r):
                    add("gate.\(l).down", [r, dims[l]], std: Float((1.0 / Double(dims[l])).squareRoot()))
                    add("gate.\(l).up", [g, r], std: 0.01)
                    add("gate.\(l).bias", [g], fill: Network.initialGateLogit)
                }
            }
        }
        add("output.weight", [spec.classes, dims[dims.count - 2]], std: Float((1.0 / Double(dims[dims.count - 2])).squareRoot()))
        add("output.bias", [spec.classes])
    }

    /// Gates in hidden layer `layer` (ceil(H / G)).
    public func gates(layer: Int) -> Int { (spec.hidden[layer] + granularity - 1) / granularity }

    public func param(_ name: String) -> Param {
        guard let p = byName[name] else { preconditionFailure("no parameter \(name) in a \(spec.kind) network") }
        return p
    }
    public func hasParam(_ name: String) -> Bool { byName[name] != nil }
    public var parameterCount: Int { params.reduce(0) { $0 + $1.count } }
}
