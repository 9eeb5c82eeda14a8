import DGKernels
import DGModels
import DGRuntime
import Glibc

/// What measuring one cell produced (before derivation).
public enum CellMeasurement: Sendable {
    /// `reference`: the group's dense model timed alternately with the cell (see `CellResult.referenceTiming`).
    case measured(timing: CellTiming, cost: CostBreakdown, denseCost: KernelCost, activeFraction: Double,
                  notes: [String: String], runtime: RuntimeStatistics?, reference: CellTiming? = nil)
    case skipped(String)
    case failed(String)
}

/// Thrown out of a measurement when Ctrl-C arrives mid-cell: the partial cell is discarded.
public struct SweepInterrupted: Error {}

/// Measures cells. The real one runs models on dgperf's kernels; tests inject fakes.
public protocol CellMeasuring: AnyObject {
    /// One-core FMA peak in GFLOP/s, measured once per run.
    var peakGflopsPerCore: Double? { get }
    func measure(_ cell: Cell, spec: SweepSpec) throws -> CellMeasurement
    /// Measures the peak again and keeps the best (least disturbed) value; called when the sweep ends.
    func refinePeak()
}

extension CellMeasuring {
    /// Best of many short trials: on a shared machine a 5 ms slice is far more likely to run undisturbed
    /// than a 50 ms one, and the peak is a best-case figure by definition.
    static func peak(_ kernels: KernelSet) -> Double {
        FMAPeak.measure(kernels, seconds: 0.005, trials: 40)
    }

    public func refinePeak() {}
}

/// Times `InferenceModel.forward` following `RepetitionPolicy`.
public final class KernelCellMeasurer: CellMeasuring {
    public let kernels: KernelSet
    public private(set) var peakGflopsPerCore: Double?
    /// Gated models run through the dense path (env DGPERF_DISABLE_SPARSE=1): a deliberate slowdown
    /// that makes `dgperf compare` fail, so the regression check can be demonstrated.
    public let sparseDisabled: Bool
    private var engines: [Int: (ParallelExecutor, GemmEngine)] = [:]
    private var flushBuffer: [UInt8] = []
    private var trained: TrainedWeights?
    /// The first cell of a process warms up for at least this long: in 2 of 4 default sweeps the very first cell (dense,
    /// H = 512, batch 1) timed 10–20 % slow after the usual 50 ms warm-up, and the next cell (dropout, the same
    /// computation) came out "1.1–1.2× faster than dense". Start-up transients outlast a per-cell warm-up.
    static let firstCellWarmupSeconds = 0.3
    private var warmedUp = false
    /// The last dense reference model built (see `measure`), keyed by shape, spec and threads.
    private var lastReference: (key: String, model: InferenceModel)?

    public init(kernels: KernelSet, measurePeak: Bool = true, environment: [String: String] = [:]) {
        self.kernels = kernels
        sparseDisabled = environment["DGPERF_DISABLE_SPARSE"].map { $0 != "" && $0 != "0" } ?? false
        if measurePeak { peakGflopsPerCore = KernelCellMeasurer.peak(kernels) }
    }

    /// Best of many short trials: on a shared machine a 5 ms slice is far more likely to run undisturbed
    /// than a 50 ms one, and the peak is a best-case figure by definition.
    static func peak(_ kernels: KernelSet) -> Double {
        FMAPeak.measure(kernels, seconds: 0.005, trials: 40)
    }

    public func refinePeak() {
        let again = KernelCellMeasurer.peak(kernels)
        peakGflopsPerCore = max(peakGflopsPerCore ?? 0, again)
    }

    func engine(threads: Int) -> (ParallelExecutor, GemmEngine) {
        if let e = engines[threads] { return e }
        let ex = ExecutorFactory.make(threads: threads)
        let e = (ex, GemmEngine(kernels: kernels, executor: ex))
        engines[threads] = e
        return e
    }

    public func measure(_ cell: Cell, spec: SweepSpec) throws -> CellMeasurement {
        var notes: [String: String] = [:]
        let (executor, engine) = engine(threads: cell.threads)
        let model: InferenceModel
        // The group's dense model, timed alternately with a gated (or dropout) cell so drift hits both sides of its speedup.
        var reference: InferenceModel? = nil
        do {
            switch try makeModel(cell, spec: spec, engine: engine, notes: &notes) {
            case .success(let m): model = m
            case .failure(let skip): return .skipped(skip.reason)
            }
            if cell.pairsWithDense {
                // Built once per shape group (its cells come one after another), not per cell.
                let denseCell = Cell(model: .dense, hidden: cell.hidden, batch: cell.batch, threads: cell.threads)
                let key = "\(denseCell.key) \(spec.inputFeatures) \(spec.classes) \(spec.seed) \(spec.masks)"
                if let last = lastReference, last.key == key {
                    reference = last.model
                } else {
                    var referenceNotes: [String: String] = [:]
                    if case .success(let m) = try makeModel(denseCell, spec: spec, engine: engine, notes: &referenceNotes) {
                        reference = m
                        lastReference = (key, m)
                    }
                }
            }
        } catch let e as ModelError {
            if case .notImplemented = e { return .skipped("\(e)") }
            return .failed("\(e)")
        }
        let batch = cell.batch, inF = spec.inputFeatures
        let variants = KernelCellMeasurer.inputVariants
        let inputs = KernelCellMeasurer.makeInputs(spec: spec, batch: batch)
        let output = AlignedBuffer(capacity: max(batch * spec.classes, 1))
        var variant = 0
        func call(_ m: InferenceModel) throws -> ForwardReport {
            defer { variant = (variant + 1) % variants }
            return try m.forward(input: inputs.pointer + variant * batch * inF, batch: batch, output: output.pointer)
        }
        let policy = spec.repetition
        do {
            // Cost: mean over the input variants (per-sample gates may differ by input).
            var cost = CostBreakdown.zero, active = 0.0
            for _ in 0..<variants {
                let r = try call(model)
                cost += r.cost; active += r.activeFraction
                for (k, v) in r.notes { notes[k] = v }
            }
            cost = CostBreakdown(useful: cost.useful.divided(by: variants), overhead: cost.overhead.divided(by: variants),
                                 wasted: cost.wasted.divided(by: variants))
            // Warm-up (the reference too).
            let w0 = monotonicNanos()
            var warmup = 0
            let warmupSeconds = warmedUp ? policy.warmupSeconds : max(policy.warmupSeconds, Self.firstCellWarmupSeconds)
            warmedUp = true
            while warmup < policy.warmupCalls || Double(monotonicNanos() - w0) * 1e-9 < warmupSeconds {
                _ = try call(model); if let reference { _ = try call(reference) }
                warmup += 1
                if Interrupt.requested { throw SweepInterrupted() }
            }
            let paired = reference != nil
            let inner = policy.innerCalls(singleCallSeconds: try timeSeconds { _ = try call(model) }, cold: spec.cold, paired: paired)
            let referenceInner = try reference.map {
                policy.innerCalls(singleCallSeconds: try timeSeconds { [m = $0] in _ = try call(m) }, cold: spec.cold, paired: true)
            } ?? 1
            _ = ExecutorFactory.statistics(executor)  // reset counters before the timed region
            var samples: [Double] = [], referenceSamples: [Double] = []
            var timed = 0.0
            var stop: RepetitionPolicy.StopReason?
            // Each sample starts from the model's own caches: after a switch one untimed call brings its weights back,
            // and paired samples last ≥ `RepetitionPolicy.pairedMinSampleSeconds` so what the switch leaves behind is
            // amortised (see there); `--cold` flushes instead.
            func prepare(_ m: InferenceModel) throws {
                if spec.cold { flushCaches() } else if paired { _ = try call(m) }
            }
            func referenceSample() throws {
                guard let reference else { return }
                try prepare(reference)
                let r = try timeSeconds { for _ in 0..<referenceInner { _ = try call(reference) } }
                referenceSamples.append(r / Double(referenceInner))
            }
            while stop == nil {
                // One sample of the reference and one of the cell per repetition, so whatever load the machine sees hits
                // both; the order alternates (ABBA).
                let referenceFirst = samples.count % 2 == 0
                if referenceFirst { try referenceSample() }
                try prepare(model)
                let t = try timeSeconds { for _ in 0..<inner { _ = try call(model) } }
                samples.append(t / Double(inner))
                timed += t
                if !referenceFirst { try referenceSample() }
                if Interrupt.requested { throw SweepInterrupted() }
                stop = policy.stopReason(samples: samples, timedSeconds: timed)
            }
            let timing = CellTiming(samples: samples, innerCalls: inner, warmupCalls: warmup, stopReason: stop!)
            let referenceTiming = reference == nil ? nil
                : CellTiming(samples: referenceSamples, innerCalls: referenceInner, warmupCalls: warmup, stopReason: stop!)
            let runtime = ExecutorFactory.statistics(executor)
            if runtime?.workersMoved == true {
                notes["flag"] = "workers moved off their cores during the timed region (see runtime)"
            }
            return .measured(timing: timing, cost: cost, denseCost: model.denseCost(batch: batch),
                             activeFraction: active / Double(variants), notes: notes, runtime: runtime,
                             reference: referenceTiming)
        } catch let e as ModelError {
            if case .notImplemented = e { return .skipped("\(e)") }
            return .failed("\(e)")
        }
    }

    struct Skip: Error { let reason: String }

    /// The model a cell times: synthetic, or trained weights (`--weights`); a dense cell without trained dense weights
    /// falls back to a synthetic dense model. `.failure` is a skip with its reason.
    func makeModel(_ cell: Cell, spec: SweepSpec, engine: GemmEngine, notes: inout [String: String]) throws -> Result<InferenceModel, Skip> {
        var modelSpec = cell.modelSpec(spec)
        if sparseDisabled && cell.model != .dense && cell.model != .dropout {
            modelSpec.kind = .dense
            notes["sparsePath"] = "disabled by DGPERF_DISABLE_SPARSE=1 (ran the dense model)"
        }
        guard spec.masks.hasPrefix("trained:"), !sparseDisabled else {
            return .success(try ModelFactory.synthetic(modelSpec, engine: engine, seed: spec.seed))
        }
        let dir = String(spec.masks.dropFirst("trained:".count))
        if trained?.directory != dir { trained = try TrainedWeights.scan(dir) }
        if let entry = trained!.entry(for: cell) {
            notes["weights"] = entry.path
            notes["accuracy"] = String(entry.testAccuracy)
            return .success(try ModelFactory.load(entry.path, engine: engine))
        }
        guard cell.model == .dense else { return .failure(Skip(reason: "no trained weights in \(dir) for this cell")) }
        notes["weights"] = "synthetic dense reference (no trained dense model of this shape in \(dir))"
        return .success(try ModelFactory.synthetic(modelSpec, engine: engine, seed: spec.seed))
    }

    /// Input rows per cell: inputs are generated before timing and samples rotate through a few variants,
    /// so per-sample gates see varied data. The peers get the very same inputs.
    public static let inputVariants = 4

    /// `inputVariants` × batch × inputFeatures inputs: Gaussian, seeded by the sweep seed — or, when trained
    /// weights are timed (`--weights`), Fashion-MNIST test images scaled as in training, because learned gates
    /// open a different fraction of units on data unlike what they were trained on. Falls back to Gaussian
    /// (with a note in the results) when the dataset is not installed.
    public static func makeInputs(spec: SweepSpec, batch: Int) -> AlignedBuffer {
        let count = inputVariants * batch * spec.inputFeatures
        let inputs = AlignedBuffer(capacity: count)
        if spec.masks.hasPrefix("trained:"), let test = testImages, test.features == spec.inputFeatures {
            let rows = inputVariants * batch
            for r in 0..<rows {
                let src = (r % test.count) * test.features
                for j in 0..<test.features { inputs.pointer[r * test.features + j] = Float(test.images[src + j]) / 255 }
            }
            return inputs
        }
        var rng = SplitMix64(seed: spec.seed &+ 0x5EED)
        for i in 0..<count { inputs.pointer[i] = rng.nextGaussian() }
        return inputs
    }

    /// Fashion-MNIST test split (for trained weights), loaded once; nil when not installed.
    static let testImages: Dataset? = try? Dataset.load(.test)

    /// Bytes written to evict the caches (`--cold`): twice the last-level cache, at least 32 MiB.
    public static var flushBytes: Int {
        let l3 = (CacheSizes.current.l3PerCore ?? 8 << 20) * max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        return max(2 * l3, 32 << 20)
    }

    /// Evicts the caches by writing a buffer larger than the last-level cache (`--cold`).
    func flushCaches() {
        if flushBuffer.isEmpty {
            flushBuffer = [UInt8](repeating: 0, count: KernelCellMeasurer.flushBytes)
        }
        flushBuffer.withUnsafeMutableBufferPointer { p in
            var i = 0
            while i < p.count { p[i] &+= 1; i += 64 }
        }
    }
}

extension KernelCost {
    func divided(by n: Int) -> KernelCost {
        KernelCost(macs: macs / n, bytesRead: bytesRead / n, bytesWritten: bytesWritten / n)
    }
}
