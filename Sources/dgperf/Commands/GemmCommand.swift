import ArgumentParser
import DGHarness
import Glibc
import DGKernels
import DGReport
import DGRuntime
import DGStats
import FoundationEssentials

/// `dgperf gemm`: time SGEMM shapes on dgperf's kernels, with spread, fraction of measured FMA peak,
/// and optionally numpy/OpenBLAS on the same shapes in the same run (`--peer numpy`).
struct GemmCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "Time C = A·Bᵀ (or A·B) on dgperf's kernels, optionally against numpy in the same run.",
        discussion: """
        Examples:
          dgperf gemm --m 256 --k 784 --n 512
          dgperf gemm --m 1024 --k 1024 --n 1024 --threads 2 --isa avx2
          dgperf gemm --suite --peer numpy      # the reference shapes, ratios vs numpy and 2-vs-1 threads
        """
    )

    @Option(parsing: .unconditional, help: "Rows of A and C (batch size).") var m: Int?
    @Option(parsing: .unconditional, help: "Inner dimension.") var k: Int?
    @Option(parsing: .unconditional, help: "Columns of C (output units).") var n: Int?
    @Option(parsing: .unconditional, help: "Worker threads.") var threads: Int = 1
    @Option(parsing: .unconditional, help: "Timed repetitions per shape.") var reps: Int = 30
    @Option(help: "Kernel ISA: auto, avx512 or avx2.") var isa: String = "auto"
    @Option(help: "Worker pinning: compact, scatter or none.") var pin: String = "compact"
    @Option(help: "Also time this peer on the same shapes in the same run: numpy.") var peer: String?
    @Flag(help: "Run the reference shapes (1024³, 256×784×512, 64×784×512, 1×784×512) at 1 thread plus 2-thread scaling.")
    var suite = false
    @Flag(help: "Use C = A·B (B stored k×n) instead of the MLP layer's A·Bᵀ.") var noTransB = false
    @Flag(help: "Pack the weights once outside the timed region (inference models do this); numpy cannot.")
    var prepacked = false

    static let suiteShapes = [(1024, 1024, 1024), (256, 784, 512), (64, 784, 512), (1, 784, 512)]

    func validate() throws {
        if !suite {
            guard let m, let k, let n else {
                throw ValidationError("give a shape with --m, --k and --n (e.g. --m 256 --k 784 --n 512), or --suite")
            }
            for (name, v) in [("--m", m), ("--k", k), ("--n", n)] where v < 1 {
                throw ValidationError("\(name) must be a positive integer (got \(v)); e.g. --m 256 --k 784 --n 512")
            }
            guard m.multipliedReportingOverflow(by: k).partialValue < 1 << 28,
                  k.multipliedReportingOverflow(by: n).partialValue < 1 << 28,
                  m.multipliedReportingOverflow(by: n).partialValue < 1 << 28 else {
                throw ValidationError("shape too large: each matrix must hold fewer than 2^28 floats (1 GiB)")
            }
            // A, B and its packed copy, C and the check's copy of it.
            let bytes = 4 * (m * k + 2 * k * n + 2 * m * n)
            if let message = MemoryCheck.problem(bytes: bytes, what: "--m \(m) --k \(k) --n \(n)", fix: "use a smaller shape") {
                throw ValidationError(message)
            }
        }
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1 (got \(threads))") }
        guard reps >= 1 else { throw ValidationError("--reps must be ≥ 1 (got \(reps))") }
        guard PinningPolicy(rawValue: pin) != nil else {
            throw ValidationError("--pin must be one of compact, scatter, none (got '\(pin)')")
        }
        guard ISAChoice(rawValue: isa) != nil else {
            throw ValidationError("--isa must be one of auto, avx512, avx2 (got '\(isa)')")
        }
        if let peer, peer != "numpy" { throw ValidationError("--peer must be 'numpy' (got '\(peer)')") }
        if prepacked && noTransB { throw ValidationError("--prepacked applies to the layer form A·Bᵀ; drop --no-trans-b") }
    }

    func run() throws {
        try requireOptimizedBuild()
        let kernels: KernelSet
        do { kernels = try KernelSet.select(ISAChoice(rawValue: isa)!) } catch { throw ValidationError("\(error)") }
        let transB = !noTransB
        var rows: [(shape: (Int, Int, Int), threads: Int)] = []
        if suite {
            rows = Self.suiteShapes.map { ($0, 1) }
            rows += [((1024, 1024, 1024), 2), ((256, 784, 512), 2)]
            if threads > 2 { rows += [((1024, 1024, 1024), threads), ((256, 784, 512), threads)] }
        } else {
            rows = [((m!, k!, n!), threads)]
        }
        let peak1 = FMAPeak.measure(kernels)
        print("dgperf gemm  \(transB ? "C = A·Bᵀ" : "C = A·B")\(prepacked ? " (B pre-packed)" : "")  kernel=\(kernels.name)  \(kernels.blocking)  build=\(KernelBuild.isOptimized ? "optimised" : "UNOPTIMISED")")
        print("  cpu: \(CPUFeatures.current.brand)  measured FMA peak \(Format.fixed(peak1, 1)) GFLOP/s per core")
        var results: [String: Summary] = [:]  // "m,k,n,t" → GFLOP/s
        var table: [[String]] = []
        var poolLines: [String] = []
        for row in rows {
            let (m, k, n) = row.shape
            let (times, pool) = try measureGemm(kernels: kernels, threads: row.threads, m: m, k: k, n: n, transB: transB)
            poolLines.append("  \(m)×\(k)×\(n) t=\(row.threads): " + PoolReport.summaryLine(pool))
            let flops = 2.0 * Double(m * n * k)
            let g = Summary(times.map { flops / $0 / 1e9 })!, t = Summary(times)!
            results["\(m),\(k),\(n),\(row.threads)"] = g
            table.append(["\(m)×\(k)×\(n)", "\(row.threads)", Format.fixed(t.min * 1e3, 3), Format.fixed(t.median * 1e3, 3),
                          Format.fixed(t.p95 * 1e3, 3), Format.fixed(g.median, 1),
                          Format.fixed(100 * g.median / (peak1 * Double(row.threads)), 0) + "%"])
        }
        var header = ["shape m×k×n", "threads", "min ms", "median ms", "p95 ms", "GFLOP/s", "of peak"]
        // Same-run scaling: t threads vs 1 thread on the same shape.
        header.append("vs 1 thread")
        for (i, row) in rows.enumerated() {
            let (m, k, n) = row.shape
            if row.threads > 1, let one = results["\(m),\(k),\(n),1"], let many = results["\(m),\(k),\(n),\(row.threads)"] {
                table[i].append(Format.fixed(many.median / one.median, 2) + "×")
            } else { table[i].append("") }
        }
        if peer == "numpy" {
            header += ["numpy GFLOP/s", "dgperf/numpy"]
            var peerInfo = ""
            for (i, row) in rows.enumerated() {
                let (m, k, n) = row.shape
                guard let p = numpyPeer(m: m, k: k, n: n, threads: row.threads, isa: kernels.isa, transB: transB) else {
                    table[i] += ["n/a", "n/a"]; continue
                }
                peerInfo = "numpy peer: \(p.blas), OpenBLAS kernel \(p.corename)"
                let g = Summary(p.seconds.map { 2.0 * Double(m * n * k) / $0 / 1e9 })!
                let mine = results["\(m),\(k),\(n),\(row.threads)"]!
                table[i] += [Format.fixed(g.median, 1), Format.fixed(mine.median / g.median, 2) + "×"]
            }
            if !peerInfo.isEmpty { print("  \(peerInfo) (OPENBLAS_CORETYPE/L2_SIZE \(kernels.isa == .avx2 ? "forced to Haswell" : "unset") for the peer)") }
        }
        print(MarkdownTable.render(header: header, rows: table))
        for line in poolLines { print(line) }
    }

    /// Per-call seconds of `reps` samples, each sample ≥ 1 ms of back-to-back calls, after ≥ 50 ms warm-up,
    /// and what the pinned pool observed during the timed samples.
    func measureGemm(kernels: KernelSet, threads: Int, m: Int, k: Int, n: Int,
                     transB: Bool) throws -> ([Double], PoolStatistics) {
        let executor = WorkerPool(workers: threads, policy: PinningPolicy(rawValue: pin)!)
        let engine = GemmEngine(kernels: kernels, executor: executor)
        var rng = SplitMix64(seed: 42)
        let a = (0..<(m * k)).map { _ in rng.nextFloat() - 0.5 }
        let b = (0..<(k * n)).map { _ in rng.nextFloat() - 0.5 }
        var c = [Float](repeating: 0, count: m * n)
        let ldb = transB ? k : n
        var times: [Double] = []
        try a.withUnsafeBufferPointer { ap in
            try b.withUnsafeBufferPointer { bp in
                try c.withUnsafeMutableBufferPointer { cp in
                    let packed = prepacked ? engine.packWeights(bp.baseAddress!, n: n, k: k, ldw: k) : nil
                    func once() throws {
                        if let packed {
                            engine.gemm(m: m, a: .rowMajor(ap.baseAddress!, ld: k), packed: packed,
                                        c: OutputOperand(base: cp.baseAddress!, rowStride: n))
                        } else {
                            try engine.sgemm(transB: transB, m: m, n: n, k: k, a: ap.baseAddress!, lda: k,
                                             b: bp.baseAddress!, ldb: ldb, c: cp.baseAddress!, ldc: n)
                        }
                    }
                    let t0 = monotonicNanos()
                    var w = 0
                    while w < 3 || monotonicNanos() - t0 < 50_000_000 { try once(); w += 1 }
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
        return (times, executor.statistics())
    }

    struct PeerResult: Decodable { var seconds: [Double]; var blas: String; var corename: String }

    /// numpy on the same shape, same threads, in a subprocess; nil (with one line on stderr) when unavailable.
    func numpyPeer(m: Int, k: Int, n: Int, threads: Int, isa: ISA, transB: Bool) -> PeerResult? {
        guard let dir = RepositoryScripts.directory() else {
            printErr("numpy peer skipped: scripts/gemm_peer.py not found (run from the repository or set DGPERF_ROOT)")
            return nil
        }
        var env = Subprocess.environment(setting: ["OPENBLAS_NUM_THREADS": "\(threads)", "OMP_NUM_THREADS": "\(threads)"],
                                         unsetting: ["OPENBLAS_L2_SIZE", "OPENBLAS_CORETYPE"])
        if isa == .avx2 { env["OPENBLAS_CORETYPE"] = "Haswell" }
        var args = ["python3", dir + "/gemm_peer.py", "--shapes", "\(m),\(k),\(n)", "--reps", "\(reps)"]
        if !transB { args.append("--no-trans-b") }
        guard let (out, status) = try? Subprocess.run(args, environment: env), status == 0,
              let line = out.split(separator: "\n").last,
              let r = try? JSONDecoder().decode(PeerResult.self, from: Data(line.utf8)) else {
            printErr("numpy peer skipped: python3/numpy not available or failed")
            return nil
        }
        return r
    }
}

/// Refuses to time code compiled without optimisation (shared check: `BuildIdentity.requireOptimized`).
func requireOptimizedBuild() throws {
    do { try BuildIdentity.requireOptimized() } catch let e as HarnessError { throw ValidationError(e.message) }
}

