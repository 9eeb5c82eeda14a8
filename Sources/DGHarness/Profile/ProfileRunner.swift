import DGKernels
import DGModels
import DGRuntime
import DGStats

/// What to profile.
public struct ProfileRequest: Sendable {
    public var spec: ModelSpec
    public var batch: Int
    public var threads: Int
    /// Trained weights (.dgw); nil = synthetic model from `spec`.
    public var weightsPath: String?
    /// Timed samples of each kind (profiled, unprofiled), interleaved.
    public var repetitions: Int
    /// Each timed sample lasts at least this long (short calls are repeated inside it).
    public var minimumSampleSeconds: Double
    public var warmupSeconds: Double
    public var seed: UInt64

    public init(spec: ModelSpec, batch: Int, threads: Int, weightsPath: String? = nil, repetitions: Int = 31,
                minimumSampleSeconds: Double = 0.002, warmupSeconds: Double = 0.2, seed: UInt64 = 1) {
        self.spec = spec; self.batch = batch; self.threads = threads; self.weightsPath = weightsPath
        self.repetitions = repetitions; self.minimumSampleSeconds = minimumSampleSeconds
        self.warmupSeconds = warmupSeconds; self.seed = seed
    }

    public func validate() throws {
        guard batch >= 1 else { throw HarnessError(.usage, "--batch must be ≥ 1 (got \(batch))") }
        guard threads >= 1 else { throw HarnessError(.usage, "--threads must be ≥ 1 (got \(threads))") }
        guard repetitions >= 3 else { throw HarnessError(.usage, "--repetitions must be ≥ 3 (got \(repetitions)); medians need a few samples") }
        if weightsPath == nil {
            do { try spec.validate() } catch { throw HarnessError(.usage, "\(error)") }
            try MemoryCheck.require(spec, batch: batch, bytes: spec.estimatedMemoryBytes(batch: batch),
                                    available: SystemMemory.availableBytes(), fix: "use smaller --hidden widths or a smaller --batch")
        }
    }
}

/// The raw result of profiling: per-sample phase entries and wall times, and the summed kernel accounting.
/// `ProfileAnalysis` turns it into a `ProfileReport`.
public struct ProfileMeasurement: Sendable {
    public var spec: ModelSpec
    public var layerNames: [String]
    /// Per profiled sample: the recorder's entries, divided by the calls in the sample (seconds, work per call).
    public var samples: [[PhaseRecorder.Entry]]
    public var callsPerSample: Int
    /// Wall seconds per forward call, per sample.
    public var profiledSeconds: [Double]
    public var unprofiledSeconds: [Double]
    /// Σ over every profiled call of the recorder's work and of the model's `ForwardReport.cost.total`.
    public var recordedWork: KernelCost
    public var reportedWork: KernelCost
    /// Per (layer, phase) work summed over every profiled call, and the number of those calls.
    public var workByCell: [CellKey: KernelCost]
    public var callsByCell: [CellKey: Int]
    public var profiledCalls: Int
    /// One call's ForwardReport cost (the first profiled call).
    public var forwardCost: CostBreakdown
    public var counters: CounterReport
    public var inputs: String
    public var recorderMismatches: Int
    /// That call's mean active fraction of the gated units (`ForwardReport.activeFraction`): a trained model's learned
    /// one, which its spec does not hold.
    public var activeFraction: Double = 1

    public struct CellKey: Hashable, Sendable {
        public var layer: Int
        public var phase: Phase
    }
}

/// Runs a model with and without the phase recorder, interleaved, on the pinned worker pool.
public enum ProfileRunner {
    /// Builds the model and measures it. `counters` is created first so worker threads inherit it.
    public static func measure(_ request: ProfileRequest, kernels: KernelSet, counterAPI: PerfEventAPI = .system,
                               clock: (() -> UInt64)? = nil) throws -> ProfileMeasurement {
        try request.validate()
        let counters = PerfCounters(api: counterAPI)
        let executor = ExecutorFactory.make(threads: request.threads)
        let engine = GemmEngine(kernels: kernels, executor: executor)
        let model: InferenceModel
        do {
            if let w = request.weightsPath {
                guard AtomicFile.exists(w) else {
                    throw HarnessError(.noInput, "no weight file at '\(w)'; pass a .dgw written by `dgperf train` (see results/weights/)")
                }
                model = try ModelFactory.load(w, engine: engine)
            } else {
                model = try ModelFactory.synthetic(request.spec, engine: engine, seed: request.seed)
            }
        } catch let e as HarnessError { throw e } catch {
            throw HarnessError(.usage, "cannot build the model: \(error)")
        }
        guard let profiled = model as? PhaseProfiled else {
            throw HarnessError(.usage, "model kind '\(model.spec.kind.rawValue)' has no phase hooks")
        }
        return try measure(model: model, profiled: profiled, engine: engine, request: request, counters: counters, clock: clock)
    }

    /// Measures an already built model (tests inject models and clocks here).
    public static func measure(model: InferenceModel, profiled: PhaseProfiled, engine: GemmEngine, request: ProfileRequest,
                               counters: PerfCounters, clock: (() -> UInt64)? = nil) throws -> ProfileMeasurement {
        let spec = model.spec
        let batch = request.batch, inF = spec.inputFeatures
        let input = AlignedBuffer(capacity: batch * inF)
        let inputs = fillInputs(input.pointer, batch: batch, features: inF, trained: request.weightsPath != nil, seed: request.seed)
        let output = AlignedBuffer(capacity: batch * spec.classes)
        let layerNames = spec.profiledLayerNames
        let recorder = PhaseRecorder(layers: layerNames.count, clock: clock)
        recorder.packTicksSource = { [unowned engine] in engine.packTicks }
        recorder.packBytesSource = { [unowned engine] in engine.packBytes }
        let now: () -> UInt64 = clock ?? monotonicNanos

        func call() throws -> ForwardReport {
            do { return try model.forward(input: input.pointer, batch: batch, output: output.pointer) } catch {
                throw HarnessError(.usage, "forward pass failed: \(error)")
            }
        }
        func attach(_ on: Bool) {
            profiled.phaseRecorder = on ? recorder : nil
            engine.measuresPacking = on
        }

        // Warm-up (both modes) and the number of calls per timed sample.
        let w0 = now()
        var single = 0.0, warm = 0
        repeat {
            attach(warm % 2 == 1)
            let t0 = now(); _ = try call(); single = Double(now() - t0) * 1e-9
            warm += 1
        } while warm < 4 || Double(now() - w0) * 1e-9 < request.warmupSeconds
        let inner = max(1, min(10_000, Int((request.minimumSampleSeconds / max(single, 1e-9)).rounded(.up))))

        var samples: [[PhaseRecorder.Entry]] = []
        var profiledSeconds: [Double] = [], unprofiledSeconds: [Double] = []
        var recorded = KernelCost.zero, reported = KernelCost.zero
        var workByCell: [ProfileMeasurement.CellKey: KernelCost] = [:], callsByCell: [ProfileMeasurement.CellKey: Int] = [:]
        var forwardCost: CostBreakdown?
        var activeFraction = 1.0
        var mismatches = 0
        counters.start()
        for rep in 0..<request.repetitions {
            // ABBA order: drift and neighbours' load hit both modes alike.
            for on in (rep % 2 == 0 ? [false, true] : [true, false]) {
                attach(on)
                if on { recorder.reset() }
                var reports = KernelCost.zero
                let t0 = now()
                for _ in 0..<inner {
                    if on { recorder.begin(.other, layer: -1) }
                    let r = try call()
                    if on { recorder.end(.other, layer: -1) }
                    reports = reports + r.cost.total
                    if forwardCost == nil && on { forwardCost = r.cost; activeFraction = r.activeFraction }
                }
                let seconds = Double(now() - t0) * 1e-9 / Double(inner)
                guard on else { unprofiledSeconds.append(seconds); continue }
                profiledSeconds.append(seconds)
                mismatches += recorder.mismatchedEnds
                reported = reported + reports
                var entries = recorder.entries()
                for e in entries {
                    let cost = KernelCost(macs: e.macs, bytesRead: e.bytesRead, bytesWritten: e.bytesWritten)
                    recorded = recorded + cost
                    let key = ProfileMeasurement.CellKey(layer: e.layer, phase: e.phase)
                    workByCell[key, default: .zero] = workByCell[key, default: .zero] + cost
                    callsByCell[key, default: 0] += e.calls
                }
                for i in entries.indices { entries[i].nanoseconds /= UInt64(inner) }
                samples.append(entries)
            }
        }
        let counterReport = counters.stop()
        attach(false)
        return ProfileMeasurement(spec: spec, layerNames: layerNames, samples: samples, callsPerSample: inner,
                                  profiledSeconds: profiledSeconds, unprofiledSeconds: unprofiledSeconds,
                                  recordedWork: recorded, reportedWork: reported, workByCell: workByCell, callsByCell: callsByCell,
                                  profiledCalls: inner * request.repetitions, forwardCost: forwardCost ?? .zero,
                                  counters: counterReport, inputs: inputs, recorderMismatches: mismatches,
                                  activeFraction: activeFraction)
    }

    /// Trained models see real test images (their gates depend on the data); synthetic ones Gaussian noise.
    static func fillInputs(_ x: UnsafeMutablePointer<Float>, batch: Int, features: Int, trained: Bool, seed: UInt64) -> String {
        if trained, let data = try? Dataset.load(.test), data.features == features, data.count > 0 {
            data.gatherFirst(batch, into: x)
            return "fashion-mnist test (first \(batch))"
        }
        var rng = SplitMix64(seed: seed &+ 0x5EED)
        for i in 0..<(batch * features) { x[i] = rng.nextGaussian() }
        return "gaussian"
    }
}
