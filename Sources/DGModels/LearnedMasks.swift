import DGKernels
import DGRuntime

/// The per-sample gate bits a trained gated model decides on real inputs — what `dgperf kernel --masks learned` times
/// the sparse paths on, since learned masks are skewed (a few units on for most inputs, most for few) where the
/// benchmark's synthetic masks are uniform.
public enum LearnedMasks {
    /// Gate bits (batch × gates, row-major) of `network`'s first hidden layer for the first `batch` samples of `data`
    /// (wrapping around when `data` has fewer), with that layer's granularity and width.
    public static func firstLayer(_ network: Network, data: Dataset, batch: Int, engine: GemmEngine)
        throws -> (bits: [UInt8], granularity: Int, units: Int) {
        try check(network)
        let spec = network.spec
        guard batch >= 1 else { throw ModelError.invalidArgument("batch must be ≥ 1 (got \(batch))") }
        guard data.count > 0, data.features == spec.inputFeatures else {
            throw ModelError.invalidArgument("the data have \(data.features) features but the model expects \(spec.inputFeatures)")
        }
        guard let model = try ModelFactory.build(network, engine: engine) as? MaskedMLP else {
            throw ModelError.invalidArgument("\(spec.kind.rawValue) model without gates")
        }
        model.recordMasks = true
        let x = AlignedBuffer(capacity: batch * spec.inputFeatures), out = AlignedBuffer(capacity: batch * spec.classes)
        data.gatherFirst(batch, into: x.pointer)
        _ = try model.forward(input: x.pointer, batch: batch, output: out.pointer)
        return (model.lastGateBits[0], network.granularity, spec.hidden[0])
    }

    /// Throws unless `network` decides per-sample masks from its input (a DynamicGate model without static gates).
    public static func check(_ network: Network) throws {
        let spec = network.spec
        guard spec.kind == .dg, network.gatePredictor != .staticLogits else {
            throw ModelError.invalidArgument(
                "learned per-sample masks need a DynamicGate model whose gates read the input (gate full, lowrank:R or block:G); this one is \(spec.kind.rawValue)\(spec.kind == .dg ? " with static gates (one mask for every input)" : "")")
        }
    }
}
