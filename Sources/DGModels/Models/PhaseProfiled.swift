import DGRuntime

/// A model whose forward pass reports its phases to a `PhaseRecorder` (`dgperf profile`).
/// Layer indices: hidden layers 0..<L, the output layer L (for Switch-MoE: 0 = experts' first GEMM,
/// router and routing; 1 = experts' output GEMM and the combine). `nil` = not profiled (one nil check per hook).
public protocol PhaseProfiled: AnyObject {
    var phaseRecorder: PhaseRecorder? { get set }
}

extension ModelSpec {
    /// Names of the recorder's layer slots, e.g. ["hidden.0", "output"].
    public var profiledLayerNames: [String] {
        kind == .moe ? ["experts", "output"] : hidden.indices.map { "hidden.\($0)" } + ["output"]
    }
}
