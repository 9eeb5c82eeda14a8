import DGKernels
import DGModels
import DGRuntime
import Glibc

/// What measuring one cell produced (before derivation).
public enum CellMeasurement: Sendable {
    case measured(timing: CellTiming, cost: CostBreakdown, denseCost: KernelCost, activeFraction: Double,
                  notes: [String: String], runtime: RuntimeStatistics?)
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
        var modelSpec = cell.modelSpec(spec)
        var notes: [String: String] = [:]
        if sparseDisabled && cell.model != .dense && cell.model != .dropout {
            modelSpec.kind = .dense
            notes["sparsePath"] = "disabled by DGPERF_DISABLE_SPARSE=1 (ran the dense model)"
        }
        let (executor, engine) = engine(threads: cell.threads)
        let model: InferenceModel
        do {
            if spec.masks.hasPrefix("trained:"), !sparseDisabled {
                let dir = String(spec.masks.dropFirst("trained:".count))
                if trained?.directory != dir { trained = try TrainedWeights.scan(dir) }
                if let entry = trained!.entry(for: cell) {
                    model = try ModelFactory.load(entry.path, engine: engine)
                    notes["weights"] = entry.path
                    notes["accuracy"] = String(entry.testAccuracy)
                } else if cell.model == .dense {
                    model = try ModelFactory.synthetic(modelSpec, engine: engine, seed: spec.seed)
                    notes["weights"] = "synthetic dense reference (no trained dense model of this shape in \(dir))"
                } else {
                    return .skipped("no trained weights in \(dir) for this cell")
                }
            } else {
                model = try ModelFactory.synthetic(modelSpec, engine: engine, seed: spec.seed)
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
        func call() throws -> ForwardReport {
            defer { variant = (variant + 1) % variants }
            return try model.forward(input: inputs.pointer + variant * batch * inF, batch: batch, output: output.pointer)
        }
        let policy = spec.repetition
        do {
            // Cost: mean over the input variants (per-sample gates may differ by input).
            var cost = CostBreakdown.zero, active = 0.0
            for _ in 0..<variants {
                let r = try call()
                cost += r.cost; active += r.activeFraction
                for (k, v) in r.notes { notes[k] = v }
            }
            cost = CostBreakdown(useful: cost.useful.divided(by: variants), overhead: cost.overhead.divided(by: variants),
                                 wasted: cost.wasted.divided(by: variants))
            // Warm-up.
            let w0 = monotonicNanos()
            var warmup = 0
            let warmupSeconds = warmedUp ? policy.warmupSeconds : max(policy.warmupSeconds, Self.firstCellWarmupSeconds)
            warmedUp = true
            while warmup < policy.warmupCalls || Double(monotonicNanos() - w0) * 1e-9 < warmupSeconds {
                _ = try call(); warmup += 1
                if Interrupt.requested { throw SweepInterrupted() }
            }
            let single = try timeSeconds { _ = try call() }
            let inner = policy.innerCalls(singleCallSeconds: single, cold: spec.cold)
            _ = ExecutorFactory.statistics(executor)  // reset counters before the timed region
            var samples: [Double] = []
            var timed = 0.0
            var stop: RepetitionPolicy.StopReason?
            while stop == nil {
                if spec.cold { flushCaches() }
                let t = try timeSeconds { for _ in 0..<inner { _ = try call() } }
                samples.append(t / Double(inner))
                timed += t
                if Interrupt.requested { throw SweepInterrupted() }
                stop = policy.stopReason(samples: samples, timedSeconds: timed)
            }
            let timing = CellTiming(samples: samples, innerCalls: inner, warmupCalls: warmup, stopReason: stop!)
            let runtime = ExecutorFactory.statistics(executor)
            if runtime?.workersMoved == true {
                notes["flag"] = "workers moved off their cores during the timed region (see runtime)"
            }
            return .measured(timing: timing, cost: cost, denseCost: model.denseCost(batch: batch),
                             activeFraction: active / Double(variants), notes: notes, runtime: runtime)
        } catch let e as ModelError {
            if case .notImplemented = e { return .skipped("\(e)") }
            return .failed("\(e)")
        }
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
