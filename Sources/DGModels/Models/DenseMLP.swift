import DGKernels
import DGRuntime

/// Plain MLP inference: Linear+ReLU per hidden layer, then the classifier layer.
/// (Dropout models are identical at inference: inverted dropout scales during training.)
public final class DenseMLP: InferenceModel, PhaseProfiled {
    public let spec: ModelSpec
    let engine: GemmEngine
    /// weights[l] is out×in row-major; biases[l] has `out` entries.
    var weights: [[Float]]
    var biases: [[Float]]
    private var scratch: [AlignedBuffer] = []
    /// Packs each layer's weights once (shared with the gated models, so dense and gated compare like for like).
    private let layers: GatedLayerExecutor
    public var phaseRecorder: PhaseRecorder?

    /// Random (He-initialised, seeded) weights.
    public init(spec: ModelSpec, engine: GemmEngine, seed: UInt64) {
        self.spec = spec
        self.engine = engine
        layers = GatedLayerExecutor(engine: engine)
        var rng = SplitMix64(seed: seed)
        let dims = spec.dims
        weights = []; biases = []
        for l in 0..<(dims.count - 1) {
            let fanIn = dims[l], fanOut = dims[l + 1]
            let scale = Float((2.0 / Double(fanIn)).squareRoot())
            weights.append((0..<(fanIn * fanOut)).map { _ in rng.nextGaussian() * scale })
            biases.append([Float](repeating: 0, count: fanOut))
        }
    }

    /// Trained weights from a dense or dropout `Network`.
    public init(network: Network, engine: GemmEngine) {
        spec = network.spec
        self.engine = engine
        layers = GatedLayerExecutor(engine: engine)
        let names = (0..<spec.hidden.count).map { "hidden.\($0)" } + ["output"]
        weights = names.map { network.param("\($0).weight").values }
        biases = names.map { network.param("\($0).bias").values }
    }

    public func denseCost(batch: Int) -> KernelCost { ModelCost.dense(spec: spec, batch: batch) }

    public func forward(input: UnsafePointer<Float>, batch: Int, output: UnsafeMutablePointer<Float>) throws -> ForwardReport {
        guard batch >= 1 else { throw ModelError.invalidArgument("batch must be ≥ 1 (got \(batch))") }
        let dims = spec.dims
        if scratch.count != spec.hidden.count { scratch = spec.hidden.map { _ in AlignedBuffer() } }
        var cost = KernelCost.zero
        var x = input
        for l in 0..<(dims.count - 1) {
            let last = l == dims.count - 2
            let out = last ? output : scratch[l].reserve(batch * dims[l + 1])
            phaseRecorder?.begin(.gemm, layer: l)
            let layerCost = weights[l].withUnsafeBufferPointer { w in
                biases[l].withUnsafeBufferPointer { b in
                    layers.linearDense(x: x, batch: batch, inDim: dims[l], weight: w.baseAddress!, bias: b.baseAddress!,
                                       outDim: dims[l + 1], relu: !last, out: out)
                }
            }
            phaseRecorder?.end(.gemm, layer: l, cost: layerCost)
            cost = cost + layerCost
            x = UnsafePointer(out)
        }
        return ForwardReport(cost: CostBreakdown(useful: cost), activeFraction: 1, notes: ["strategy": "dense"])
    }
}

/// The dense model's work for a spec (the relative-MAC denominator), shared by every family.
enum ModelCost {
    static func dense(spec: ModelSpec, batch: Int) -> KernelCost {
        let dims = spec.dims
        var c = KernelCost.zero
        for l in 0..<(dims.count - 1) {
            c = c + KernelCost(macs: batch * dims[l] * dims[l + 1], bytesRead: 4 * (batch * dims[l] + dims[l] * dims[l + 1]),
                               bytesWritten: 4 * batch * dims[l + 1])
        }
        return c
    }
}
