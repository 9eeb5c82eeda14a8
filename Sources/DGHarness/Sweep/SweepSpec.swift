import DGModels

/// What a sweep measures: the axes, the fixed model settings, and the repetition policy.
/// Codable: it is stored in every results file (resume and merge check it) and can be given as a JSON spec file.
public struct SweepSpec: Codable, Sendable, Equatable {
    /// Preset the spec started from ("quick", "default", "full") or "custom".
    public var preset: String
    public var models: [ModelKind]
    /// Hidden layer widths of each model shape, e.g. [[512, 512], [2048, 2048]].
    public var hidden: [[Int]]
    public var batches: [Int]
    /// Active fractions r of gated units (0 < r ≤ 1). Sparsity s = 1 − r is recorded alongside.
    public var activeFractions: [Double]
    /// Units per gate (1 = unit granularity).
    public var granularities: [Int]
    public var maskKinds: [MaskKind]
    public var threads: [Int]
    public var inputFeatures: Int
    public var classes: Int
    public var gate: String
    public var experts: Int
    public var topK: Int
    public var capacityFactor: Double
    /// Flush caches before every sample (`--cold`); warm by default.
    public var cold: Bool
    public var seed: UInt64
    /// Kernel ISA choice: auto, avx512, avx2.
    public var isa: String
    /// "synthetic" (random weights, masks at the requested r) or "trained:<dir>".
    public var masks: String
    public var repetition: RepetitionPolicy

    public init(preset: String, models: [ModelKind], hidden: [[Int]], batches: [Int], activeFractions: [Double],
                granularities: [Int], maskKinds: [MaskKind], threads: [Int], inputFeatures: Int = 784, classes: Int = 10,
                gate: String = "lowrank:32", experts: Int = 8, topK: Int = 2, capacityFactor: Double = 1.25,
                cold: Bool = false, seed: UInt64 = 1, isa: String = "auto", masks: String = "synthetic",
                repetition: RepetitionPolicy = RepetitionPolicy()) {
        self.preset = preset; self.models = models; self.hidden = hidden; self.batches = batches
        self.activeFractions = activeFractions; self.granularities = granularities; self.maskKinds = maskKinds
        self.threads = threads; self.inputFeatures = inputFeatures; self.classes = classes; self.gate = gate
        self.experts = experts; self.topK = topK; self.capacityFactor = capacityFactor; self.cold = cold
        self.seed = seed; self.isa = isa; self.masks = masks; self.repetition = repetition
    }
}

/// Named starting points. Sizes are chosen for a 2-core machine: quick ≈ 1 min, default ≈ 5 min
/// (the newcomer's first run; must stay under 10), full = paper grid, hours, resumable.
public enum SweepPreset: String, CaseIterable, Sendable {
    case quick, `default`, full

    public var spec: SweepSpec {
        let all = ModelKind.allCases
        switch self {
        case .quick:
            return SweepSpec(preset: rawValue, models: all, hidden: [[512]], batches: [1, 32, 256],
                             activeFractions: [0.5, 0.25, 0.1], granularities: [1, 16], maskKinds: [.perSample],
                             threads: [1],
                             repetition: RepetitionPolicy(minReps: 10, maxReps: 400, budgetSeconds: 0.25, targetRelativeCI: 0.03))
        case .default:
            return SweepSpec(preset: rawValue, models: all, hidden: [[512], [2048]], batches: [1, 32, 256],
                             activeFractions: [0.5, 0.25, 0.1, 0.05], granularities: [1, 32], maskKinds: [.perSample, .shared],
                             threads: [1, 2],
                             repetition: RepetitionPolicy(minReps: 10, maxReps: 500, budgetSeconds: 0.4, targetRelativeCI: 0.02))
        case .full:
            return SweepSpec(preset: rawValue, models: all, hidden: [[256], [512], [1024], [2048], [4096]],
                             batches: [1, 8, 32, 128, 512], activeFractions: [1, 0.75, 0.5, 0.25, 0.1, 0.05, 0.02],
                             granularities: [1, 4, 16, 64], maskKinds: [.perSample, .shared], threads: [1, 2, 4],
                             repetition: RepetitionPolicy(minReps: 30, maxReps: 2000, budgetSeconds: 2, targetRelativeCI: 0.005))
        }
    }
}

extension SweepSpec {
    /// Checks every value; the first problem becomes one message naming the field and the fix.
    public func validate() throws {
        func fail(_ m: String) -> HarnessError { .usage(m) }
        guard !models.isEmpty else { throw fail("no models to measure; give e.g. --models dense,dg") }
        guard !hidden.isEmpty, hidden.allSatisfy({ !$0.isEmpty }) else { throw fail("no hidden layer sizes; give e.g. --hidden 512,2048") }
        for h in hidden { for w in h where w < 1 || w > 65_536 {
            throw fail("hidden width \(w) is out of range; use 1…65536, e.g. --hidden 512,2048")
        } }
        guard !batches.isEmpty else { throw fail("no batch sizes; give e.g. --batch 1,32,256") }
        for b in batches where b < 1 || b > 65_536 {
            throw fail("batch size \(b) is out of range; use 1…65536, e.g. --batch 1,32,256")
        }
        guard !activeFractions.isEmpty else { throw fail("no active fractions; give e.g. --active 0.5,0.25,0.1") }
        for r in activeFractions where !(r > 0 && r <= 1) {
            throw fail("active fraction \(r) is outside (0, 1]; r is the share of gated units that run, e.g. --active 0.5,0.1 (or --sparsity 0.5,0.9)")
        }
        guard !granularities.isEmpty else { throw fail("no granularities; give e.g. --granularity 1,16") }
        let narrowest = hidden.flatMap { $0 }.min()!
        for g in granularities where g < 1 || g > narrowest {
            throw fail("granularity \(g) is out of range; units per gate must be 1…\(narrowest) (the narrowest hidden layer), e.g. --granularity 1,16")
        }
        guard !maskKinds.isEmpty else { throw fail("no mask kinds; give e.g. --mask per-sample,shared") }
        guard !threads.isEmpty else { throw fail("no thread counts; give e.g. --threads 1,2") }
        for t in threads where t < 1 || t > 1024 { throw fail("thread count \(t) is out of range; use 1…1024, e.g. --threads 1,2") }
        guard inputFeatures >= 1, inputFeatures <= 1 << 20 else { throw fail("inputFeatures \(inputFeatures) is out of range; use 1…1048576") }
        guard classes >= 1, classes <= 1 << 20 else { throw fail("classes \(classes) is out of range; use 1…1048576") }
        guard experts >= 1, experts <= 4096 else { throw fail("experts \(experts) is out of range; use 1…4096") }
        guard topK >= 1, topK <= experts else { throw fail("topK \(topK) must be between 1 and experts (\(experts))") }
        guard capacityFactor > 0, capacityFactor.isFinite else { throw fail("capacityFactor must be > 0 (got \(capacityFactor))") }
        guard ["auto", "avx512", "avx2"].contains(isa) else { throw fail("--isa must be one of auto, avx512, avx2 (got '\(isa)')") }
        let p = repetition
        guard p.minReps >= 1 else { throw fail("--min-reps must be ≥ 1 (got \(p.minReps))") }
        guard p.maxReps >= p.minReps else { throw fail("--max-reps (\(p.maxReps)) must be ≥ --min-reps (\(p.minReps))") }
        guard p.budgetSeconds > 0, p.budgetSeconds.isFinite else { throw fail("--budget must be a positive number of seconds per cell (got \(p.budgetSeconds)), e.g. --budget 0.5") }
        guard p.targetRelativeCI > 0, p.targetRelativeCI < 1 else { throw fail("--target-ci must be in (0, 1), a relative half-width such as 0.02 (got \(p.targetRelativeCI))") }
        guard p.warmupCalls >= 0, p.warmupSeconds >= 0, p.minSampleSeconds >= 0 else { throw fail("warm-up and sample settings must be ≥ 0") }
        for h in hidden {
            let widest = ([inputFeatures, classes] + h).max()!
            for b in batches where b.multipliedReportingOverflow(by: widest).partialValue >= 1 << 31 {
                throw fail("batch \(b) × width \(widest) needs more than 2^31 floats per activation; use a smaller --batch or --hidden")
            }
        }
    }

    /// The sweep's most memory-hungry cell: its model (`Cell.modelSpec`), batch and the memory its forward pass needs
    /// (`ModelSpec.estimatedMemoryBytes`).
    public func largestModel() -> (spec: ModelSpec, batch: Int, bytes: Int) {
        var best = (spec: ModelSpec(kind: .dense, inputFeatures: inputFeatures, hidden: [1], classes: classes), batch: 1, bytes: 0)
        for cell in expandCells() {
            let model = cell.modelSpec(self)
            let bytes = model.estimatedMemoryBytes(batch: cell.batch)
            if bytes > best.bytes { best = (model, cell.batch, bytes) }
        }
        return best
    }

    /// Throws when the largest model would not fit in `available` bytes (nil: unknown, not checked), before any
    /// cell runs or any results file is written.
    public func checkMemory(available: Int?) throws {
        let largest = largestModel()
        try MemoryCheck.require(largest.spec, batch: largest.batch, bytes: largest.bytes, available: available,
                                fix: "use smaller --hidden widths, fewer --layers or a smaller --batch")
    }

    /// Axes with duplicates removed (first occurrence wins), so cell keys stay unique.
    public func deduplicated() -> SweepSpec {
        func uniq<T: Hashable>(_ a: [T]) -> [T] { var seen = Set<T>(); return a.filter { seen.insert($0).inserted } }
        var s = self
        s.models = uniq(models); s.hidden = uniq(hidden); s.batches = uniq(batches)
        s.activeFractions = uniq(activeFractions); s.granularities = uniq(granularities)
        s.maskKinds = uniq(maskKinds); s.threads = uniq(threads)
        return s
    }
}
