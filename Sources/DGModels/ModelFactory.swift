import DGKernels
import DGRuntime

/// Builds forward passes: synthetic weights and masks for timing sweeps, or trained weights from a file.
public enum ModelFactory {
    /// A model with random weights (seeded) and, for gated kinds, synthetic masks at `spec.activeFraction`.
    /// DynamicGate: the gate predictor still runs (random weights) and is counted as overhead, but the mask
    /// is a random choice of exactly round(r·gates) gates, so the active fraction is what the sweep asked for.
    public static func synthetic(_ spec: ModelSpec, engine: GemmEngine, seed: UInt64 = 1) throws -> InferenceModel {
        try spec.validate()
        switch spec.kind {
        case .dense, .dropout:
            return DenseMLP(spec: spec, engine: engine, seed: seed)
        case .random:
            return try MaskedMLP(network: Network(spec: spec, seed: seed), engine: engine, masks: .random, seed: seed)
        case .dg:
            return try MaskedMLP(network: Network(spec: spec, seed: seed), engine: engine, masks: .syntheticGates, seed: seed)
        case .moe:
            return try SwitchMoEMLP(network: Network(spec: spec, seed: seed), engine: engine)
        }
    }

    /// Inference model over trained parameters.
    public static func build(_ network: Network, engine: GemmEngine, seed: UInt64 = 1) throws -> InferenceModel {
        switch network.spec.kind {
        case .dense, .dropout: return DenseMLP(network: network, engine: engine)
        case .random: return MaskedMLP(network: network, engine: engine, masks: .random, seed: seed)
        case .dg: return MaskedMLP(network: network, engine: engine, masks: .learnedGates, seed: seed)
        case .moe: return try SwitchMoEMLP(network: network, engine: engine)
        }
    }

    /// Loads a weight file written by `dgperf train` (see `WeightFile`); throws `WeightFileError` with the fix.
    public static func load(_ weightsFile: String, engine: GemmEngine) throws -> InferenceModel {
        try build(try WeightFile.read(path: weightsFile).network, engine: engine)
    }
}
