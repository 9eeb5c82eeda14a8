import DGKernelsAVX2
import DGKernelsAVX512
import DGRuntime

/// One measured bandwidth: a STREAM-style kernel over arrays of a given size, on `threads` threads.
public struct BandwidthMeasurement: Codable, Sendable, Equatable {
    /// "copy", "triad" or "read".
    public var kernel: String
    /// "L1", "L2", "L3" or "DRAM": the level the working set was sized for.
    public var level: String
    /// Bytes of all arrays together (the working set).
    public var workingSetBytes: Int
    public var threads: Int
    /// Best of the trials, in GB/s (10⁹ bytes), counting STREAM's bytes (no write-allocate traffic).
    public var gigabytesPerSecond: Double

    public init(kernel: String, level: String, workingSetBytes: Int, threads: Int, gigabytesPerSecond: Double) {
        self.kernel = kernel; self.level = level; self.workingSetBytes = workingSetBytes; self.threads = threads
        self.gigabytesPerSecond = gigabytesPerSecond
    }
}

/// What this machine can do, measured (not assumed): FMA peak per core and on all cores, DRAM bandwidth
/// (STREAM copy and triad on arrays ≫ L3) and per-cache-level bandwidth (triad sized to fit each level).
/// The roofline and the profiler's "fraction of peak" divide by these.
public struct MachineLimits: Codable, Sendable, Equatable {
    public static let schema = "dgperf.limits/1"
    public var schema: String
    /// Machine identity the cache is keyed by (see `EnvironmentInfo.fingerprint`).
    public var fingerprint: String
    public var cpuModel: String
    public var kernel: String
    /// Worker threads of the all-cores measurements (= logical cores).
    public var cores: Int
    public var fmaPeakGflopsPerCore: Double
    public var fmaPeakGflopsAllCores: Double
    /// DRAM copy/triad on 1 thread and on all cores, and cache-level triads on one core.
    public var bandwidth: [BandwidthMeasurement]
    public var measuredAt: String
    public var measurementSeconds: Double

    public init(fingerprint: String, cpuModel: String, kernel: String, cores: Int, fmaPeakGflopsPerCore: Double,
                fmaPeakGflopsAllCores: Double, bandwidth: [BandwidthMeasurement], measuredAt: String,
                measurementSeconds: Double) {
        schema = MachineLimits.schema
        self.fingerprint = fingerprint; self.cpuModel = cpuModel; self.kernel = kernel; self.cores = cores
        self.fmaPeakGflopsPerCore = fmaPeakGflopsPerCore; self.fmaPeakGflopsAllCores = fmaPeakGflopsAllCores
        self.bandwidth = bandwidth; self.measuredAt = measuredAt; self.measurementSeconds = measurementSeconds
    }

    /// Compute roof for `threads` threads: per-core peak × threads (up to the core count), capped by the
    /// all-cores measurement when that one is clean (≥ 80% of per-core × cores: it then captures an
    /// all-core clock drop). A lower all-cores figure means other load shared the cores while measuring;
    /// it is kept in the record but not used as a roof (fractions of peak above 100% would follow).
    public func peakGflops(threads: Int) -> Double {
        let t = Double(min(max(1, threads), max(cores, 1)))
        let linear = fmaPeakGflopsPerCore * t
        return allCoresMeasurementIsClean && t >= Double(cores) ? min(linear, fmaPeakGflopsAllCores) : linear
    }

    /// How far a fresh per-core FMA probe may sit from the cached figure before the cache counts as stale.
    public static let stalePeakTolerance = 0.10

    /// Why these (cached) limits no longer describe the machine, or nil: a per-core FMA peak probed now that differs
    /// from the cached one by more than `stalePeakTolerance` either way. The cache is keyed by CPU model and core
    /// count, which a VM keeps when it moves host or its clock changes, and a slow spell must not stay frozen in it
    /// (seen on the 2-vCPU VM: a measurement read 216 GFLOP/s per core against 262 cached, and 256–262 again
    /// minutes later); a probe above the cache means the cached run was the disturbed one.
    public func staleness(probedPeakPerCore probe: Double) -> String? {
        guard fmaPeakGflopsPerCore > 0, probe > 0 else { return nil }
        let drift = probe / fmaPeakGflopsPerCore - 1
        guard abs(drift) > Self.stalePeakTolerance else { return nil }
        let percent = Int((drift * 100).rounded())
        return "FMA peak per core probed at \(Int(probe.rounded())) GFLOP/s, cached \(Int(fmaPeakGflopsPerCore.rounded())) "
            + "(\(percent > 0 ? "+" : "")\(percent) %, measured \(measuredAt))"
    }

    /// The all-cores FMA measurement ran undisturbed (see `peakGflops(threads:)`).
    public var allCoresMeasurementIsClean: Bool {
        fmaPeakGflopsAllCores >= 0.8 * fmaPeakGflopsPerCore * Double(max(cores, 1))
    }

    /// Best measured bandwidth of `kernel` at `level` with the thread count closest to (not above) `threads`.
    public func bandwidth(_ level: String, kernel: String = "triad", threads: Int) -> Double? {
        let candidates = bandwidth.filter { $0.level == level && $0.kernel == kernel }
        let fitting = candidates.filter { $0.threads <= max(threads, 1) }
        return (fitting.max { $0.threads < $1.threads } ?? candidates.min { $0.threads < $1.threads })?.gigabytesPerSecond
    }

    /// The least time `bytes` can be read in on `threads` threads: at the bandwidth measured for the smallest level
    /// whose measured working set holds them (L2, L3, else DRAM; triad, else copy). A floor, not a prediction: data
    /// that stays in a higher cache reads faster. Nil when no level was measured.
    public func streamingFloor(bytes: Int, threads: Int) -> (seconds: Double, level: String, gigabytesPerSecond: Double)? {
        for level in ["L2", "L3", "DRAM"] {
            let measured = bandwidth.filter { $0.level == level }
            guard let size = measured.map(\.workingSetBytes).max(), level == "DRAM" || bytes <= size else { continue }
            guard let gbps = bandwidth(level, threads: threads) ?? bandwidth(level, kernel: "copy", threads: threads),
                  gbps > 0 else { continue }
            return (Double(bytes) / (gbps * 1e9), level, gbps)
        }
        return nil
    }

    /// The DRAM roof (triad) for `threads` threads, in GB/s.
    public func memoryBandwidth(threads: Int) -> Double {
        bandwidth("DRAM", threads: threads) ?? bandwidth("DRAM", kernel: "copy", threads: threads) ?? 0
    }
}

/// Measures `MachineLimits`. Every figure is the best of several short trials: on a shared machine a
/// short slice is more likely to run undisturbed, and a limit is a best case by definition.
public enum MachineLimitsProbe {
    public struct Options: Sendable {
        /// Seconds per trial and trials per figure.
        public var trialSeconds: Double
        public var trials: Int
        /// DRAM arrays are each at least this many times the whole L3 (and ≥ 64 MiB).
        public var dramMultipleOfL3: Int
        public init(trialSeconds: Double = 0.02, trials: Int = 7, dramMultipleOfL3: Int = 4) {
            self.trialSeconds = trialSeconds; self.trials = trials; self.dramMultipleOfL3 = dramMultipleOfL3
        }
        /// For tests: tiny arrays, one short trial (numbers are not meaningful).
        public static let quick = Options(trialSeconds: 0.002, trials: 1, dramMultipleOfL3: 0)
    }

    /// Measures on `executor` (its workers are the "all cores"; pass a pinned `WorkerPool`).
    public static func measure(kernels: KernelSet, executor: ParallelExecutor, fingerprint: String, cpuModel: String,
                               caches: CacheSizes = .current, measuredAt: String, options: Options = Options()) -> MachineLimits {
        let t0 = monotonicNanos()
        let perCore = FMAPeak.measure(kernels, seconds: options.trialSeconds / 4, trials: options.trials * 4)
        let allCores = allCoresPeak(kernels, executor: executor, options: options)
        let loops = StreamLoops(isa: kernels.isa)
        var bw: [BandwidthMeasurement] = []
        let cores = executor.workerCount
        // DRAM: three arrays, each ≫ L3.
        let l3Total = (caches.l3PerCore ?? 8 << 20) * max(cores, 1)
        let dramArrayBytes = options.dramMultipleOfL3 == 0 ? 1 << 20 : max(options.dramMultipleOfL3 * l3Total, 64 << 20)
        let arrays = StreamArrays(floats: dramArrayBytes / 4)
        for threads in Set([1, cores]).sorted() {
            for kernel in ["copy", "triad"] {
                bw.append(BandwidthMeasurement(kernel: kernel, level: "DRAM", workingSetBytes: arrays.workingSet(kernel),
                                               threads: threads,
                                               gigabytesPerSecond: stream(kernel, arrays, count: arrays.count, threads: threads,
                                                                          executor: executor, loops: loops, options: options)))
            }
        }
        // Cache levels, one core: triad on three arrays totalling about half the level.
        let levels: [(String, Int?)] = [("L1", caches.l1d), ("L2", caches.l2), ("L3", caches.l3PerCore.map { $0 * max(cores, 1) })]
        for (name, size) in levels {
            guard let size, size >= 3 * 1024 else { continue }
            let floats = min(arrays.count, max(64, (size / 2) / 12 / 64 * 64))
            bw.append(BandwidthMeasurement(kernel: "triad", level: name, workingSetBytes: 12 * floats, threads: 1,
                                           gigabytesPerSecond: stream("triad", arrays, count: floats, threads: 1,
                                                                      executor: executor, loops: loops, options: options)))
        }
        return MachineLimits(fingerprint: fingerprint, cpuModel: cpuModel, kernel: kernels.name, cores: cores,
                             fmaPeakGflopsPerCore: perCore, fmaPeakGflopsAllCores: allCores, bandwidth: bw,
                             measuredAt: measuredAt, measurementSeconds: Double(monotonicNanos() - t0) * 1e-9)
    }

    /// Every worker runs the FMA loop at once; GFLOP/s = all FLOPs / wall time of the region.
    static func allCoresPeak(_ kernels: KernelSet, executor: ParallelExecutor, options: Options) -> Double {
        let workers = executor.workerCount
        var iters = 1 << 14
        let sinks = UnsafeMutablePointer<Float>.allocate(capacity: 16 * max(workers, 1))
        defer { sinks.deallocate() }
        sinks.initialize(repeating: 0, count: 16 * max(workers, 1))
        func region(_ n: Int) -> Double {
            timeSeconds { executor.run(tasks: workers) { t in sinks[16 * t] += kernels.peakLoop(n, 1.0) } }
        }
        while true {  // calibrate
            let t = region(iters)
            if t >= options.trialSeconds / 16 || iters > 1 << 30 { iters = max(1, Int(Double(iters) * options.trialSeconds / 4 / max(t, 1e-6))); break }
            iters *= 4
        }
        var best = 0.0
        for _ in 0..<max(options.trials * 4, 1) {  // many short trials: one undisturbed one is enough
            let t = region(iters)
            best = max(best, Double(iters) * kernels.peakFlopsPerIteration * Double(workers) / t / 1e9)
        }
        return best
    }

    /// Best-of-trials GB/s of `kernel` over the first `count` floats of each array, split over `threads` workers.
    static func stream(_ kernel: String, _ arrays: StreamArrays, count: Int, threads: Int, executor: ParallelExecutor,
                       loops: StreamLoops, options: Options) -> Double {
        let tasks = min(max(threads, 1), executor.workerCount)
        let bytesPerElement = kernel == "copy" ? 8 : kernel == "read" ? 4 : 12
        let sinks = UnsafeMutablePointer<Float>.allocate(capacity: 16 * tasks)
        defer { sinks.deallocate() }
        sinks.initialize(repeating: 0, count: 16 * tasks)
        /// `reps` passes per task inside one fork-join, so tiny cache-level arrays are not dominated by dispatch.
        func passes(_ reps: Int) {
            executor.run(tasks: tasks) { t in
                // 64-float (256-byte) aligned chunks keep every chunk start 64-byte aligned.
                let chunks = count / 64
                let lo = chunks * t / tasks * 64, hi = t == tasks - 1 ? count : chunks * (t + 1) / tasks * 64
                let n = hi - lo
                guard n > 0 else { return }
                for _ in 0..<reps {
                    switch kernel {
                    case "copy": loops.copy(arrays.a + lo, arrays.b + lo, n)
                    case "read": sinks[16 * t] += loops.sum(arrays.b + lo, n)
                    default: loops.triad(arrays.a + lo, arrays.b + lo, arrays.c + lo, 3, n)
                    }
                }
            }
        }
        passes(1)  // first touch / warm
        var reps = 1
        while true {  // calibrate passes per trial
            let t = timeSeconds { passes(reps) }
            if t >= options.trialSeconds / 2 || reps > 1 << 20 { reps = max(1, Int(Double(reps) * options.trialSeconds / max(t, 1e-9))); break }
            reps *= 4
        }
        var best = 0.0
        for _ in 0..<max(options.trials, 1) {
            let t = timeSeconds { passes(reps) }
            best = max(best, Double(bytesPerElement * count * reps) / t / 1e9)
        }
        return best
    }
}

/// The three STREAM arrays (64-byte aligned, initialised so no denormals or NaNs appear).
final class StreamArrays {
    let count: Int
    let a: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>, c: UnsafeMutablePointer<Float>
    private let buffers: [AlignedBuffer]

    init(floats: Int) {
        count = max(64, floats / 64 * 64)
        buffers = (0..<3).map { _ in AlignedBuffer(capacity: floats) }
        a = buffers[0].pointer; b = buffers[1].pointer; c = buffers[2].pointer
        a.update(repeating: 1, count: count); b.update(repeating: 2, count: count); c.update(repeating: 0.5, count: count)
    }

    func workingSet(_ kernel: String) -> Int { (kernel == "copy" ? 2 : kernel == "read" ? 1 : 3) * 4 * count }
}

/// The bandwidth loops of one ISA target.
struct StreamLoops {
    let copy: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, Int) -> Void
    let triad: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, Float, Int) -> Void
    let sum: (UnsafePointer<Float>, Int) -> Float

    init(isa: ISA) {
        switch isa {
        case .avx512: copy = streamCopyAVX512; triad = streamTriadAVX512; sum = streamSumAVX512
        case .avx2: copy = streamCopyAVX2; triad = streamTriadAVX2; sum = streamSumAVX2
        }
    }
}
