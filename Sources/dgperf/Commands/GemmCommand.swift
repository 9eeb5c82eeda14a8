import ArgumentParser
import DGKernels
import DGRuntime
import DGReport
import DGStats

/// `dgperf gemm`: time one SGEMM shape and report GFLOP/s with spread and fraction of measured peak.
struct GemmCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "Time C = A·Bᵀ (or A·B) for one shape on dgperf's kernels.",
        discussion: """
        Examples:
          dgperf gemm --m 256 --k 784 --n 512
          dgperf gemm --m 1024 --k 1024 --n 1024 --threads 2 --isa avx2
        """
    )

    @Option(help: "Rows of A and C (batch size).") var m: Int
    @Option(help: "Inner dimension.") var k: Int
    @Option(help: "Columns of C (output units).") var n: Int
    @Option(help: "Worker threads.") var threads: Int = 1
    @Option(help: "Timed repetitions.") var reps: Int = 30
    @Option(help: "Kernel ISA: auto, avx512 or avx2.") var isa: String = "auto"
    @Option(help: "Worker pinning: compact, scatter or none.") var pin: String = "compact"
    @Flag(help: "Use C = A·B (B stored k×n) instead of the MLP layer's A·Bᵀ.") var noTransB = false

    func validate() throws {
        guard m >= 1 else { throw ValidationError("--m must be a positive integer (got \(m)); e.g. --m 256") }
        guard k >= 1 else { throw ValidationError("--k must be a positive integer (got \(k)); e.g. --k 784") }
        guard n >= 1 else { throw ValidationError("--n must be a positive integer (got \(n)); e.g. --n 512") }
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1 (got \(threads))") }
        guard reps >= 1 else { throw ValidationError("--reps must be ≥ 1 (got \(reps))") }
        guard PinningPolicy(rawValue: pin) != nil else {
            throw ValidationError("--pin must be one of compact, scatter, none (got '\(pin)')")
        }
        guard ISAChoice(rawValue: isa) != nil else {
            throw ValidationError("--isa must be one of auto, avx512, avx2 (got '\(isa)')")
        }
        guard m.multipliedReportingOverflow(by: k).partialValue < 1 << 31,
              k.multipliedReportingOverflow(by: n).partialValue < 1 << 31,
              m.multipliedReportingOverflow(by: n).partialValue < 1 << 31 else {
            throw ValidationError("shape too large: each matrix must hold fewer than 2^31 elements")
        }
    }

    func run() throws {
        try requireOptimizedBuild()
        let kernels: KernelSet
        do { kernels = try KernelSet.select(ISAChoice(rawValue: isa)!) } catch { throw ValidationError("\(error)") }
        let executor = WorkerPool(workers: threads, policy: PinningPolicy(rawValue: pin)!)
        let engine = GemmEngine(kernels: kernels, executor: executor)
        var a = [Float](repeating: 0, count: m * k), b = [Float](repeating: 0, count: k * n)
        var c = [Float](repeating: 0, count: m * n)
        var rng = SplitMix64(seed: 42)
        for i in a.indices { a[i] = rng.nextFloat() - 0.5 }
        for i in b.indices { b[i] = rng.nextFloat() - 0.5 }
        let transB = !noTransB
        let ldb = transB ? k : n
        let flops = 2.0 * Double(m) * Double(n) * Double(k)
        var times: [Double] = []
        try a.withUnsafeBufferPointer { ap in
            try b.withUnsafeBufferPointer { bp in
                try c.withUnsafeMutableBufferPointer { cp in
                    func once() throws {
                        try engine.sgemm(transB: transB, m: m, n: n, k: k, a: ap.baseAddress!, lda: k,
                                         b: bp.baseAddress!, ldb: ldb, c: cp.baseAddress!, ldc: n)
                    }
                    // Warm-up: at least 3 calls and 50 ms, so caches, pages and clocks settle.
                    let t0 = monotonicNanos()
                    var w = 0
                    while w < 3 || monotonicNanos() - t0 < 50_000_000 { try once(); w += 1 }
                    // Each sample times enough calls to last ≥ 1 ms, so timer resolution is irrelevant.
                    let single = try timeSeconds { try once() }
                    let inner = max(1, Int(1e-3 / max(single, 1e-9)))
                    executor.resetStatistics()
                    for _ in 0..<reps {
                        let t = try timeSeconds { for _ in 0..<inner { try once() } }
                        times.append(t / Double(inner))
                    }
                }
            }
        }
        let gflops = times.map { flops / $0 / 1e9 }
        let peak = FMAPeak.measure(kernels) * Double(threads)
        let s = Summary(gflops)!
        let t = Summary(times)!
        print("dgperf gemm  m=\(m) k=\(k) n=\(n)  \(transB ? "C = A·Bᵀ" : "C = A·B")  threads=\(threads)  kernel=\(kernels.name)  \(kernels.blocking)")
        let f = Format.fixed
        print("  time     min \(f(t.min * 1e3, 3)) ms  median \(f(t.median * 1e3, 3)) ms  p95 \(f(t.p95 * 1e3, 3)) ms  (\(t.count) reps)")
        print("  GFLOP/s  best \(f(s.max, 1))  median \(f(s.median, 1))  p05 \(f(s.p05, 1))")
        print("  " + PoolReport.summaryLine(executor.statistics()))
        print("  measured FMA peak \(f(peak, 1)) GFLOP/s (\(threads) thread\(threads == 1 ? "" : "s")) → median at \(f(100 * s.median / peak, 0))% of peak")
    }
}

/// Refuses to time code compiled without optimisation (see Package.swift).
func requireOptimizedBuild() throws {
    guard KernelBuild.isOptimized && RuntimeBuild.isOptimized else {
        throw ValidationError("the measured code was built without optimisation; timings would be meaningless. Rebuild the kernel and runtime targets with -O (Package.swift does this in every configuration unless its flags were changed)")
    }
}
