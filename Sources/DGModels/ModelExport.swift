/// A model's parameters, for running the very same cell in another framework (the numpy / PyTorch peers).
/// Tensor names follow `Network`: `hidden.L.weight` (out × in), `hidden.L.bias`, `gate.L.*`, `output.*`,
/// `router.*`, `expert.E.*`.
public struct ModelExport: Sendable {
    public struct Tensor: Sendable {
        public var name: String
        public var shape: [Int]
        public var values: [Float]
    }

    public var spec: ModelSpec
    public var tensors: [Tensor]
    /// Units per gate of the gated layers (1 for ungated models).
    public var granularity: Int
    /// The gate predictor that runs in `forward` (its cost is real even when the mask is synthetic):
    /// "static", "full", "lowrank:R", or "none" (dense, random, moe).
    public var gatePredictor: String
    /// Factor applied to live hidden units after ReLU (1/r for the random control, else 1).
    public var liveUnitScale: Float

    public func tensor(_ name: String) -> Tensor? { tensors.first { $0.name == name } }
}

extension InferenceModel {
    /// Weights, biases, gate/router parameters and settings of this model; nil for a model type this
    /// exporter does not know.
    public func exportParameters() -> ModelExport? {
        func params(_ n: Network) -> [ModelExport.Tensor] { n.params.map { .init(name: $0.name, shape: $0.shape, values: $0.values) } }
        switch self {
        case let m as DenseMLP:
            let dims = m.spec.dims
            var t: [ModelExport.Tensor] = []
            for l in 0..<(dims.count - 1) {
                let name = l < m.spec.hidden.count ? "hidden.\(l)" : "output"
                t.append(.init(name: name + ".weight", shape: [dims[l + 1], dims[l]], values: m.weights[l]))
                t.append(.init(name: name + ".bias", shape: [dims[l + 1]], values: m.biases[l]))
            }
            return ModelExport(spec: m.spec, tensors: t, granularity: 1, gatePredictor: "none", liveUnitScale: 1)
        case let m as MaskedMLP:
            let random = m.masks == .random
            return ModelExport(spec: m.spec, tensors: params(m.network), granularity: m.granularity,
                               gatePredictor: random ? "none" : m.network.gatePredictor.description,
                               liveUnitScale: random ? Float(1 / m.spec.activeFraction) : 1)
        case let m as SwitchMoEMLP:
            return ModelExport(spec: m.spec, tensors: params(m.network), granularity: 1, gatePredictor: "none", liveUnitScale: 1)
        default:
            return nil
        }
    }

    /// One forward call that also returns the gate masks it used: per hidden layer, batch × gates bytes
    /// (1 = gate on; gate g covers units g·G ..< min(H, (g+1)·G)). Empty for models without unit masks.
    /// Synthetic-mask models draw new masks on every call, so these are the masks of *this* call.
    public func forwardRecordingMasks(input: UnsafePointer<Float>, batch: Int,
                                      output: UnsafeMutablePointer<Float>) throws -> (ForwardReport, [[UInt8]]) {
        guard let m = self as? MaskedMLP else { return (try forward(input: input, batch: batch, output: output), []) }
        let before = m.recordMasks
        m.recordMasks = true
        defer { m.recordMasks = before }
        let report = try m.forward(input: input, batch: batch, output: output)
        return (report, m.lastGateBits)
    }
}
