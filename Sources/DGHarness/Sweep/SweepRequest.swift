import DGModels
import DGRuntime
import FoundationEssentials

/// The sweep as the user typed it (strings straight from flags); `resolve()` validates everything
/// before anything is created on disk, so bad input never leaves a partial results file.
public struct SweepRequest: Sendable {
    public var preset: String?
    public var specFile: String?
    public var models: String?
    public var hidden: String?
    public var layers: Int?
    public var batch: String?
    public var active: String?
    public var sparsity: String?
    public var granularity: String?
    public var mask: String?
    public var threads: String?
    public var cold = false
    public var seed: String?
    public var isa: String?
    public var minReps: Int?
    public var maxReps: Int?
    public var budget: String?
    public var targetCI: String?
    public var weights: String?
    public var output: String?
    public var resume = false
    public var shard: String?
    public var cellsFrom: String?
    /// Root for default output directories.
    public var resultsRoot = "results"

    public init() {}
}

/// A validated sweep: what to run and where to write it.
public struct ResolvedSweep: Sendable {
    public var spec: SweepSpec
    public var shard: Shard?
    public var cellFilter: [String]?
    public var outputDirectory: String
    /// Results to continue from (`--resume`).
    public var existing: RunResults?
}


extension SweepRequest {
    public func resolve(hostname: String = EnvironmentInfo.hostName(), stamp: String = Clock.stampNow()) throws -> ResolvedSweep {
        var spec: SweepSpec
        if let file = specFile {
            guard preset == nil else { throw HarnessError.usage("give either --preset or --spec, not both (a spec file may name its own \"preset\")") }
            spec = try SpecFile.load(file)
        } else {
            let name = preset ?? "default"
            guard let p = SweepPreset(rawValue: name) else {
                throw HarnessError.usage("unknown preset '\(name)'; choose quick, default or full")
            }
            spec = p.spec
        }
        var custom = false
        if let models { spec.models = try Parse.list(models, flag: "--models", example: "dense,dg", Parse.model); custom = true }
        if let layers {
            guard layers >= 1, layers <= 64 else { throw HarnessError.usage("--layers must be 1…64 (got \(layers)), e.g. --layers 2") }
        }
        if let hidden {
            spec.hidden = try Parse.list(hidden, flag: "--hidden", example: "512,2048") { try Parse.hiddenShape($0, layers: layers ?? 1) }
            custom = true
        } else if let layers {
            spec.hidden = spec.hidden.map { Array(repeating: $0[0], count: layers) }; custom = true
        }
        if let batch { spec.batches = try Parse.list(batch, flag: "--batch", example: "1,32,256") { try Parse.int($0, flag: "--batch", example: "1,32,256") }; custom = true }
        if active != nil && sparsity != nil {
            throw HarnessError.usage("give either --active (fraction of gated units that run) or --sparsity (1 − active), not both")
        }
        if let active {
            spec.activeFractions = try Parse.list(active, flag: "--active", example: "0.5,0.25,0.1") { s in
                let r = try Parse.double(s, flag: "--active", example: "0.5,0.25,0.1")
                guard r > 0, r <= 1 else {
                    throw HarnessError.usage("--active \(s) is outside (0, 1]; the active fraction r is the share of gated units that run, e.g. --active 0.5,0.1")
                }
                return r
            }
            custom = true
        }
        if let sparsity {
            spec.activeFractions = try Parse.list(sparsity, flag: "--sparsity", example: "0.5,0.75,0.9") { s in
                let v = try Parse.double(s, flag: "--sparsity", example: "0.5,0.75,0.9")
                guard v >= 0, v < 1 else {
                    throw HarnessError.usage("--sparsity \(s) is outside [0, 1); sparsity s is the share of gated units skipped (r = 1 − s), e.g. --sparsity 0.5,0.9")
                }
                return Cell.round(1 - v)
            }
            custom = true
        }
        if let granularity { spec.granularities = try Parse.list(granularity, flag: "--granularity", example: "1,16,64") { try Parse.int($0, flag: "--granularity", example: "1,16,64") }; custom = true }
        if let mask { spec.maskKinds = try Parse.list(mask, flag: "--mask", example: "per-sample,shared", Parse.maskKind); custom = true }
        if let threads { spec.threads = try Parse.list(threads, flag: "--threads", example: "1,2") { try Parse.int($0, flag: "--threads", example: "1,2") }; custom = true }
        if cold { spec.cold = true; custom = true }
        if let seed {
            guard let v = UInt64(seed) else { throw HarnessError.usage("--seed '\(seed)' is not a non-negative integer; e.g. --seed 7") }
            spec.seed = v; custom = true
        }
        if let isa { spec.isa = isa; custom = true }
        if let minReps { spec.repetition.minReps = minReps; spec.repetition.maxReps = max(spec.repetition.maxReps, minReps); custom = true }
        if let maxReps { spec.repetition.maxReps = maxReps; custom = true }
        if let budget { spec.repetition.budgetSeconds = try Parse.double(budget, flag: "--budget", example: "0.5"); custom = true }
        if let targetCI { spec.repetition.targetRelativeCI = try Parse.fraction(targetCI, flag: "--target-ci", example: "0.02 or 2%"); custom = true }
        if let weights {
            try TrainedWeights.scan(weights).apply(to: &spec); custom = true
        }
        if custom && specFile == nil { spec.preset = "custom (from \(preset ?? "default"))" }
        spec = spec.deduplicated()
        try spec.validate()
        try spec.checkMemory(available: SystemMemory.availableBytes())
        let shard = try shard.map { text -> Shard in
            guard text == "auto" else { return try Shard.parse(text) }
            // `--shard auto`: the scheduler's array index (Slurm, or an indexed Job) picks the slice.
            do {
                let a = try ShardEnvironment.resolve(ProcessInfo.processInfo.environment)
                printStandardError("dgperf: --shard auto → \(a.index)/\(a.count) from \(a.source)")
                return Shard(index: a.index, count: a.count)
            } catch let e as ShardEnvironmentError {
                throw HarnessError.usage(e.message)
            }
        }
        var filter: [String]?
        if let cellsFrom {
            let text = try AtomicFile.read(cellsFrom)
            let keys = text.split(separator: "\n").map { $0.trimmingCharacters() }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
            guard !keys.isEmpty else { throw HarnessError.data("--cells-from '\(cellsFrom)' lists no cell keys; write one key per line (as `dgperf compare --write-regressed` does)") }
            let known = Set(spec.expandCells().map(\.key))
            if let bad = keys.first(where: { !known.contains($0) }) {
                throw HarnessError.data("--cells-from '\(cellsFrom)': cell '\(bad)' is not part of this sweep; use the same --preset/axes as the run the keys came from")
            }
            filter = keys
        }
        guard !spec.selectCells(shard: shard, keys: filter.map(Set.init)).isEmpty else {
            throw HarnessError.usage("shard \(shard?.description ?? "") holds no cells (the sweep has fewer shape groups than shards); use fewer shards")
        }
        var dir = output ?? "\(resultsRoot)/\(stamp)-\(hostname)"
        var existing: RunResults?
        if resume {
            if output == nil {
                guard let latest = SweepRequest.latestIncomplete(in: resultsRoot) else {
                    throw HarnessError(.noInput, "--resume: no interrupted sweep under '\(resultsRoot)/'; pass --output DIR of the sweep to continue")
                }
                dir = latest
            }
            guard AtomicFile.exists(dir + "/results.json") else {
                throw HarnessError(.noInput, "--resume: '\(dir)/results.json' does not exist; pass --output DIR of an interrupted sweep, or drop --resume")
            }
            existing = try ResultsStore.load(dir)
            if existing!.spec != spec || existing!.shard != shard || existing!.cellFilter != filter {
                throw HarnessError.usage("cannot resume '\(dir)': it was written by a different sweep (its spec is preset '\(existing!.spec.preset)', shard \(existing!.shard?.description ?? "all")); resume with the same flags, or choose a new --output")
            }
        } else if AtomicFile.exists(dir + "/results.json") {
            throw HarnessError(.cannotCreate, "'\(dir)' already holds a results.json; add --resume to continue it, or choose a new --output")
        }
        return ResolvedSweep(spec: spec, shard: shard, cellFilter: filter, outputDirectory: dir, existing: existing)
    }

    /// The newest results directory whose results.json is not complete.
    static func latestIncomplete(in root: String) -> String? {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: root) else { return nil }
        for name in entries.sorted(by: >) where name != "baselines" {
            let path = root + "/" + name
            if let r = try? ResultsStore.load(path), !r.complete { return path }
        }
        return nil
    }
}

/// Parsing of comma-separated flag values with messages that name the flag and show an example.
enum Parse {
    static func list<T>(_ text: String, flag: String, example: String, _ item: (String) throws -> T) throws -> [T] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters() }
        guard !parts.isEmpty, !parts.contains(where: \.isEmpty) else {
            throw HarnessError.usage("\(flag) '\(text)' has an empty entry; give a comma-separated list such as \(flag) \(example)")
        }
        return try parts.map(item)
    }
    static func int(_ s: String, flag: String, example: String) throws -> Int {
        guard let v = Int(s) else { throw HarnessError.usage("\(flag): '\(s)' is not an integer; e.g. \(flag) \(example)") }
        guard v >= 1 else { throw HarnessError.usage("\(flag): \(v) must be ≥ 1; e.g. \(flag) \(example)") }
        return v
    }
    static func double(_ s: String, flag: String, example: String) throws -> Double {
        guard let v = Double(s), v.isFinite else { throw HarnessError.usage("\(flag): '\(s)' is not a number; e.g. \(flag) \(example)") }
        return v
    }
    /// "0.1" or "10%".
    static func fraction(_ s: String, flag: String, example: String) throws -> Double {
        let pct = s.hasSuffix("%")
        let v = try double(pct ? String(s.dropLast()) : s, flag: flag, example: example)
        return pct ? v / 100 : v
    }
    static func model(_ s: String) throws -> ModelKind {
        guard let k = ModelKind(rawValue: s.lowercased()) else {
            throw HarnessError.usage("unknown model '\(s)'; choose from \(ModelKind.allCases.map(\.rawValue).joined(separator: ", ")), e.g. --models dense,dg")
        }
        return k
    }
    static func maskKind(_ s: String) throws -> MaskKind {
        guard let k = MaskKind(rawValue: s.lowercased()) else {
            throw HarnessError.usage("unknown mask kind '\(s)'; choose per-sample or shared, e.g. --mask per-sample,shared")
        }
        return k
    }
    /// "512" (→ `layers` layers of 512) or "1024/512" (explicit layer widths).
    static func hiddenShape(_ s: String, layers: Int) throws -> [Int] {
        let widths = try s.split(separator: "/", omittingEmptySubsequences: false).map {
            try int(String($0), flag: "--hidden", example: "512,2048 (or 1024/512 for explicit layers)")
        }
        return widths.count == 1 ? Array(repeating: widths[0], count: layers) : widths
    }
}

/// Spec files: JSON objects with any subset of SweepSpec's fields, laid over a preset ("preset": "quick").
public enum SpecFile {
    static let fields: Set<String> = ["preset", "models", "hidden", "batches", "activeFractions", "sparsities", "granularities",
                                      "maskKinds", "threads", "inputFeatures", "classes", "gate", "experts", "topK",
                                      "capacityFactor", "cold", "seed", "isa", "repetition"]

    struct Overlay: Decodable {
        var preset: String?
        var models: [String]?
        var hidden: [[Int]]?
        var batches: [Int]?
        var activeFractions: [Double]?
        var sparsities: [Double]?
        var granularities: [Int]?
        var maskKinds: [String]?
        var threads: [Int]?
        var inputFeatures: Int?
        var classes: Int?
        var gate: String?
        var experts: Int?
        var topK: Int?
        var capacityFactor: Double?
        var cold: Bool?
        var seed: UInt64?
        var isa: String?
        var repetition: RepetitionPolicy?
    }

    public static func load(_ path: String) throws -> SweepSpec {
        guard AtomicFile.exists(path) else {
            throw HarnessError(.noInput, "spec file '\(path)' does not exist; check the path given to --spec")
        }
        return try parse(try AtomicFile.read(path), source: path)
    }

    public static func parse(_ text: String, source: String) throws -> SweepSpec {
        let data = Data(text.utf8)
        let keys: [String: JSONAny]
        do { keys = try JSONDecoder().decode([String: JSONAny].self, from: data) } catch {
            throw HarnessError.data("spec file '\(source)' is not a JSON object (\(JSONErrors.describe(error))); see docs: a spec looks like {\"preset\": \"quick\", \"batches\": [1, 32]}")
        }
        if let unknown = keys.keys.sorted().first(where: { !fields.contains($0) }) {
            throw HarnessError.data("spec file '\(source)': unknown field '\(unknown)'; allowed fields: \(fields.sorted().joined(separator: ", "))")
        }
        let o: Overlay
        do { o = try JSONDecoder().decode(Overlay.self, from: data) } catch {
            throw HarnessError.data("spec file '\(source)': \(JSONErrors.describe(error)); fix that field")
        }
        let base = o.preset ?? "default"
        guard let preset = SweepPreset(rawValue: base) else {
            throw HarnessError.data("spec file '\(source)': unknown preset '\(base)'; use quick, default or full")
        }
        var s = preset.spec
        s.preset = "spec file \(source) (over \(base))"
        if let v = o.models { s.models = try v.map(Parse.model) }
        if let v = o.hidden { s.hidden = v }
        if let v = o.batches { s.batches = v }
        if o.activeFractions != nil && o.sparsities != nil {
            throw HarnessError.data("spec file '\(source)': give either activeFractions or sparsities, not both")
        }
        if let v = o.activeFractions { s.activeFractions = v }
        if let v = o.sparsities {
            if let bad = v.first(where: { !($0 >= 0 && $0 < 1) }) {
                throw HarnessError.data("spec file '\(source)': sparsity \(bad) is outside [0, 1); r = 1 − s must stay in (0, 1]")
            }
            s.activeFractions = v.map { Cell.round(1 - $0) }
        }
        if let v = o.granularities { s.granularities = v }
        if let v = o.maskKinds { s.maskKinds = try v.map(Parse.maskKind) }
        if let v = o.threads { s.threads = v }
        if let v = o.inputFeatures { s.inputFeatures = v }
        if let v = o.classes { s.classes = v }
        if let v = o.gate { s.gate = v }
        if let v = o.experts { s.experts = v }
        if let v = o.topK { s.topK = v }
        if let v = o.capacityFactor { s.capacityFactor = v }
        if let v = o.cold { s.cold = v }
        if let v = o.seed { s.seed = v }
        if let v = o.isa { s.isa = v }
        if let v = o.repetition { s.repetition = v }
        return s
    }
}

/// Any JSON value (only used to list a spec file's keys).
struct JSONAny: Decodable {
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { return }
        if (try? c.decode(Bool.self)) != nil { return }
        if (try? c.decode(Double.self)) != nil { return }
        if (try? c.decode(String.self)) != nil { return }
        if (try? c.decode([JSONAny].self)) != nil { return }
        _ = try c.decode([String: JSONAny].self)
    }
}

/// Trained-weights directories (models issue): only the version check lives here.
