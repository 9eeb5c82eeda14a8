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
    /// Gate predictor: "static", "full", "lowrank:R", "block:G" (see `GatePredictor`).
    public var gate: String
    public var experts: Int
    public var topK: Int
    public var capacityFactor: Double
    /// Gate temperature T in p = sigmoid(z / T) (dg).
    public var temperature: Double
    /// Mask threshold tau: a gate is on when p > tau (dg).
    public var threshold: Double
    /// At least this many gates on per sample and layer (dg); 0 = no guard.
    public var minKeep: Int
    /// Training-time drop probability (dropout); inference ignores it.
    public var dropoutRate: Double
    /// Hidden units per expert (moe); 0 = hidden[0] / experts.
    public var expertHidden: Int

    public init(kind: ModelKind, inputFeatures: Int = 784, hidden: [Int] = [512], classes: Int = 10,
                activeFraction: Double = 1, granularity: Int = 1, maskKind: MaskKind = .perSample,
                gate: String = "lowrank:32", experts: Int = 8, topK: Int = 2, capacityFactor: Double = 1.25,
                temperature: Double = 1, threshold: Double = 0.5, minKeep: Int = 0, dropoutRate: Double = 0.2,
                expertHidden: Int = 0) {
        self.kind = kind; self.inputFeatures = inputFeatures; self.hidden = hidden; self.classes = classes
        self.activeFraction = activeFraction; self.granularity = granularity; self.maskKind = maskKind
        self.gate = gate; self.experts = experts; self.topK = topK; self.capacityFactor = capacityFactor
        self.temperature = temperature; self.threshold = threshold; self.minKeep = minKeep
        self.dropoutRate = dropoutRate; self.expertHidden = expertHidden
    }

    private enum CodingKeys: String, CodingKey {
        case kind, inputFeatures, hidden, classes, activeFraction, granularity, maskKind, gate, experts, topK,
             capacityFactor, temperature, threshold, minKeep, dropoutRate, expertHidden
    }

    /// Fields added after the first contract are optional in JSON (older specs keep decoding).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ModelSpec(kind: try c.decode(ModelKind.self, forKey: .kind))
        self.init(kind: d.kind,
                  inputFeatures: try c.decodeIfPresent(Int.self, forKey: .inputFeatures) ?? d.inputFeatures,
                  hidden: try c.decodeIfPresent([Int].self, forKey: .hidden) ?? d.hidden,
                  classes: try c.decodeIfPresent(Int.self, forKey: .classes) ?? d.classes,
                  activeFraction: try c.decodeIfPresent(Double.self, forKey: .activeFraction) ?? d.activeFraction,
                  granularity: try c.decodeIfPresent(Int.self, forKey: .granularity) ?? d.granularity,
                  maskKind: try c.decodeIfPresent(MaskKind.self, forKey: .maskKind) ?? d.maskKind,
                  gate: try c.decodeIfPresent(String.self, forKey: .gate) ?? d.gate,
                  experts: try c.decodeIfPresent(Int.self, forKey: .experts) ?? d.experts,
                  topK: try c.decodeIfPresent(Int.self, forKey: .topK) ?? d.topK,
                  capacityFactor: try c.decodeIfPresent(Double.self, forKey: .capacityFactor) ?? d.capacityFactor,
                  temperature: try c.decodeIfPresent(Double.self, forKey: .temperature) ?? d.temperature,
                  threshold: try c.decodeIfPresent(Double.self, forKey: .threshold) ?? d.threshold,
                  minKeep: try c.decodeIfPresent(Int.self, forKey: .minKeep) ?? d.minKeep,
                  dropoutRate: try c.decodeIfPresent(Double.self, forKey: .dropoutRate) ?? d.dropoutRate,
                  expertHidden: try c.decodeIfPresent(Int.self, forKey: .expertHidden) ?? d.expertHidden)
    }

    /// Layer widths input → hidden… → classes.
    public var dims: [Int] { [inputFeatures] + hidden + [classes] }
    /// Units per expert (moe).
    public var unitsPerExpert: Int { expertHidden > 0 ? expertHidden : max(1, (hidden.first ?? 1) / max(experts, 1)) }

    /// Parameters (floats) of the network this spec describes, laid out as `Network` allocates them (weights,
    /// biases, gate predictor, router and experts). Computed in Int with overflow clamped, so absurd shapes give a
    /// huge number rather than a trap.
    public var parameterCount: Int {
        func mul(_ a: Int, _ b: Int) -> Int { let (p, o) = a.multipliedReportingOverflow(by: b); return o ? Int.max / 4 : p }
        func add(_ a: Int, _ b: Int) -> Int { let (p, o) = a.addingReportingOverflow(b); return o ? Int.max / 4 : p }
        if kind == .moe {
            let d = inputFeatures, he = unitsPerExpert, c = classes
            return add(mul(experts, d + 1), mul(experts, add(add(mul(he, d), he), add(mul(c, he), c))))
        }
        let dims = self.dims
        var n = 0
        let gate = kind == .dg ? (try? GatePredictor.parse(self.gate, granularity: granularity)) : nil
        for l in 0..<hidden.count {
            n = add(n, add(mul(dims[l + 1], dims[l]), dims[l + 1]))
            guard let (predictor, g0) = gate else { continue }
            let g = (dims[l + 1] + max(g0, 1) - 1) / max(g0, 1)
            switch predictor {
            case .staticLogits: n = add(n, g)
            case .full: n = add(n, add(mul(g, dims[l]), g))
            case .lowRank(let r): n = add(n, add(add(mul(r, dims[l]), mul(g, r)), g))
            }
        }
        return add(n, add(mul(classes, dims[dims.count - 2]), classes))
    }

    /// A generous estimate of the memory a forward pass of this model needs at `batch` (bytes): 16 bytes per
    /// parameter and four activation buffers of the widest layer. Measured peak RSS of `dgperf profile` on
    /// 784→4096³→10 at batch 256: 8.7 (dense) to 9.9 (dg) bytes per parameter (values and gradients as `Network`
    /// holds them, pre-packed weights); 16 leaves room for the dense reference a sweep keeps next to a gated model.
    /// Sweeps and profiles compare it with the memory available before they start.
    public func estimatedMemoryBytes(batch: Int) -> Int {
        let widest = dims.max() ?? 1
        let (act, o1) = batch.multipliedReportingOverflow(by: widest)
        let (params, o2) = parameterCount.multipliedReportingOverflow(by: 16)
        guard !o1, !o2, act < Int.max / 32 else { return Int.max }
        let (total, o3) = params.addingReportingOverflow(16 * act)
        return o3 ? Int.max : total
    }

    /// Checks shapes and settings; the message names the field and the fix.
    public func validate() throws {
        func bad(_ s: String) -> ModelError { .invalidArgument(s) }
        guard inputFeatures >= 1, classes >= 1 else { throw bad("inputFeatures and classes must be ≥ 1") }
        guard !hidden.isEmpty, hidden.allSatisfy({ $0 >= 1 }) else {
            throw bad("hidden widths must be ≥ 1 and at least one hidden layer is needed (got \(hidden))")
        }
        guard activeFraction > 0, activeFraction <= 1 else { throw bad("activeFraction must be in (0, 1] (got \(activeFraction))") }
        guard granularity >= 1 else { throw bad("granularity must be ≥ 1 (got \(granularity))") }
        guard temperature > 0 else { throw bad("temperature must be > 0 (got \(temperature))") }
        guard threshold >= 0, threshold < 1 else { throw bad("threshold (tau) must be in [0, 1) (got \(threshold))") }
        guard minKeep >= 0 else { throw bad("minKeep must be ≥ 0 (got \(minKeep))") }
        guard dropoutRate >= 0, dropoutRate < 1 else { throw bad("dropoutRate must be in [0, 1) (got \(dropoutRate))") }
        if kind == .dg { _ = try GatePredictor.parse(gate, granularity: granularity) }
        if kind == .moe {
            guard hidden.count == 1 else { throw bad("moe models have exactly one (expert) hidden layer (got hidden \(hidden))") }
            guard experts >= 1 else { throw bad("experts must be ≥ 1 (got \(experts))") }
            guard topK == 1 || topK == 2, topK <= experts else { throw bad("topK must be 1 or 2 and ≤ experts (got \(topK))") }
            guard capacityFactor > 0 else { throw bad("capacityFactor must be > 0 (got \(capacityFactor))") }
            guard expertHidden >= 0 else { throw bad("expertHidden must be ≥ 0 (got \(expertHidden))") }
        }
    }
}

/// How a DynamicGate layer predicts its gate logits from the layer input x (D features) for H units.
public enum GatePredictor: Equatable, Sendable, CustomStringConvertible {
    /// Learned logits, the same mask for every input (no input dependence, no MACs).
    case staticLogits
    /// Linear(D → gates).
    case full
    /// Linear(D → R) then Linear(R → gates).
    case lowRank(Int)

    /// Parses "static", "full", "lowrank:R", "block:G" (= full at granularity G). Returns the predictor and G.
    public static func parse(_ s: String, granularity: Int) throws -> (GatePredictor, Int) {
        let parts = s.split(separator: ":", maxSplits: 1).map(String.init)
        let arg = parts.count == 2 ? Int(parts[1]) : nil
        func bad() -> ModelError {
            .invalidArgument("gate '\(s)' is not one of static, full, lowrank:R, block:G (R, G positive integers), e.g. lowrank:32")
        }
        switch parts.first ?? "" {
        case "static" where parts.count == 1: return (.staticLogits, granularity)
        case "full" where parts.count == 1: return (.full, granularity)
        case "lowrank":
            guard let r = arg, r >= 1 else { throw bad() }
            return (.lowRank(r), granularity)
        case "block":
            guard let g = arg, g >= 1 else {
                if parts.count == 1 { return (.full, granularity) }
                throw bad()
            }
            return (.full, g)
        default: throw bad()
        }
    }

    public var description: String {
        switch self {
        case .staticLogits: return "static"
        case .full: return "full"
        case .lowRank(let r): return "lowrank:\(r)"
        }
    }

    /// Multiply-adds per sample to predict `gates` logits from `inputs` features.
    public func macsPerSample(inputs: Int, gates: Int) -> Int {
        switch self {
        case .staticLogits: return 0
        case .full: return inputs * gates
        case .lowRank(let r): return inputs * r + r * gates
        }
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
