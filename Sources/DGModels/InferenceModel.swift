import DGKernels

/// The model families the paper compares. `random` is the random-structural control: a random unit
/// mask with the same active fraction as a gated model ("fewer units" vs "learned choice of units").
public enum ModelKind: String, Codable, Sendable, CaseIterable {
    case dense, dropout, dg, random, moe
}

/// Whether one mask serves the whole batch or each sample has its own.
public enum MaskKind: String, Codable, Sendable, CaseIterable {
    case shared
    case perSample = "per-sample"
}

/// Everything needed to build a model's forward pass (architecture + gating/routing settings).
/// For synthetic models `activeFraction` sets the masks; trained models carry their own gates.
public struct ModelSpec: Codable, Hashable, Sendable {
    public var kind: ModelKind
    public var inputFeatures: Int
    public var hidden: [Int]
    public var classes: Int
    /// Active fraction r of gated units (dg, random); 1 for dense.
    public var activeFraction: Double
    /// Units per gate (G); 1 = unit granularity.
    public var granularity: Int
    public var maskKind: MaskKind
    /// Gate predictor: "static", "full", "lowrank:R", "block" (see issue 6).
    public var gate: String
    public var experts: Int
    public var topK: Int
    public var capacityFactor: Double

    public init(kind: ModelKind, inputFeatures: Int = 784, hidden: [Int] = [512], classes: Int = 10,
                activeFraction: Double = 1, granularity: Int = 1, maskKind: MaskKind = .perSample,
                gate: String = "lowrank:32", experts: Int = 8, topK: Int = 2, capacityFactor: Double = 1.25) {
        self.kind = kind; self.inputFeatures = inputFeatures; self.hidden = hidden; self.classes = classes
        self.activeFraction = activeFraction; self.granularity = granularity; self.maskKind = maskKind
        self.gate = gate; self.experts = experts; self.topK = topK; self.capacityFactor = capacityFactor
    }
}

/// What one forward call executed, per layer and in total.
public struct ForwardReport: Sendable, Codable, Equatable {
    public var cost: CostBreakdown
    /// Mean fraction of gated units that were active (1 for dense models).
    public var activeFraction: Double
    /// Free-form facts about the call, e.g. ["strategy": "unit-major"], ["dropped": "3"].
    public var notes: [String: String]
    public init(cost: CostBreakdown = .zero, activeFraction: Double = 1, notes: [String: String] = [:]) {
        self.cost = cost; self.activeFraction = activeFraction; self.notes = notes
    }
}

/// A forward pass on dgperf's kernels. The harness times `forward` and nothing else.
public protocol InferenceModel: AnyObject {
    var spec: ModelSpec { get }
    /// Rows of `input` (batch × spec.inputFeatures, row-major) → `output` (batch × spec.classes).
    /// Throws on invalid arguments (batch < 1); never traps on user input.
    func forward(input: UnsafePointer<Float>, batch: Int, output: UnsafeMutablePointer<Float>) throws -> ForwardReport
    /// The FLOP-equivalent dense model's work for this batch (denominator of relative MAC).
    func denseCost(batch: Int) -> KernelCost
}

public enum ModelError: Error, CustomStringConvertible, Equatable {
    case invalidArgument(String)
    case notImplemented(String)
    public var description: String {
        switch self {
        case .invalidArgument(let s): return s
        case .notImplemented(let s): return "\(s) is not implemented yet"
        }
    }
}
