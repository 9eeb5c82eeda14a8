import ArgumentParser
import DGKernels
import DGReport
import DGRuntime
import DGStats
import Glibc

/// `dgperf pool-bench`: what the pinned worker pool costs and buys.
/// 1. Fork-join overhead of `WorkerPool` vs `DispatchQueue.concurrentPerform` (empty job, ~1 µs job),
///    timed per round in alternating blocks of the same run.
/// 2. A dense layer (B=256, 784→512 through GemmEngine), pinned vs unpinned, at 1 thread and all threads.
struct PoolBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool-bench",
        abstract: "Fork-join overhead of the pinned worker pool vs concurrentPerform, and pinned vs unpinned dense-layer timings.",
        discussion: """
        Examples:
          dgperf pool-bench
          dgperf pool-bench --threads 2 --rounds 50000 --pin scatter
        """
    )

    @Option(help: "Workers (default: every allowed PU).") var threads: Int?
    @Option(help: "Fork-join rounds per executor and job kind.") var rounds: Int = 20_000
    @Option(help: "Timed dense-layer calls per configuration.") var reps: Int = 60
    @Option(help: "Pinning policy compared against none: compact or scatter.") var pin: String = "compact"
    @Option(help: "Spin before blocking, in microseconds (idle workers and the waiting caller).") var spinUs: Int = 100

    func validate() throws {
        if let t = threads, t < 1 { throw ValidationError("--threads must be ≥ 1 (got \(t))") }
        guard rounds >= 100 else { throw ValidationError("--rounds must be ≥ 100 (got \(rounds))") }
        guard reps >= 5 else { throw ValidationError("--reps must be ≥ 5 (got \(reps))") }
        guard let p = PinningPolicy(rawValue: pin), p != .none else {
            throw ValidationError("--pin must be compact or scatter (got '\(pin)'); 'none' is always measured as the baseline")
        }
        guard spinUs >= 0 else { throw ValidationError("--spin-us must be ≥ 0 (got \(spinUs))") }
    }

    func run() throws {
        try requireOptimizedBuild()
        let topology = Topology.current
        let workers = threads ?? topology.allowedCPUs.count
        let policy = PinningPolicy(rawValue: pin)!
        let options = WorkerPool.Options(spinMicroseconds: spinUs)
        print("dgperf pool-bench  workers=\(workers)  policy=\(policy.rawValue) vs none  spin=\(spinUs) µs  "
              + "allowed PUs \(Topology.cpuList(topology.allowedCPUs))  \(topology.cpuModel ?? "")")
        let f = Format.fixed

        // 1. Fork-join overhead.
        print("\nfork-join round trip (\(rounds) rounds each, alternating blocks of 500; ns per round)")
        print("  " + Format.padRight("executor / job", 34) + Format.pad("median", 9) + Format.pad("min", 9) + Format.pad("p95", 9))
        for (jobName, jobNanos) in [("empty", UInt64(0)), ("~1 µs", UInt64(1000))] {
            let pool = WorkerPool(workers: workers, policy: policy, options: options)
            let baseline = ConcurrentPerformExecutor(workers: workers)
            var poolTimes: [Double] = [], cpTimes: [Double] = []
            poolTimes.reserveCapacity(rounds); cpTimes.reserveCapacity(rounds)
            let job: (Int) -> Void = { _ in
                if jobNanos > 0 { let t0 = monotonicNanos(); while monotonicNanos() &- t0 < jobNanos {} }
            }
            // Warm-up both, then alternate blocks so drift and noise hit both executors alike.
            for _ in 0..<200 { pool.run(tasks: workers, job); baseline.run(tasks: workers, job) }
            pool.resetStatistics()
            while poolTimes.count < rounds {
                let block = min(500, rounds - poolTimes.count)
                for _ in 0..<block {
                    let t0 = monotonicNanos(); pool.run(tasks: workers, job)
                    poolTimes.append(Double(monotonicNanos() &- t0))
                }
                for _ in 0..<block {
                    let t0 = monotonicNanos(); baseline.run(tasks: workers, job)
                    cpTimes.append(Double(monotonicNanos() &- t0))
                }
            }
            let p = Summary(poolTimes)!, c = Summary(cpTimes)!
            let stats = pool.statistics()
            func row(_ name: String, _ s: Summary) {
                print("  " + Format.padRight(name, 34) + Format.pad(f(s.median, 0), 9) + Format.pad(f(s.min, 0), 9)
                      + Format.pad(f(s.p95, 0), 9))
            }
            row("WorkerPool(\(stats.pinned ? policy.rawValue : "unpinned")) / \(jobName)", p)
            row("concurrentPerform / \(jobName)", c)
            let overheadNote = jobNanos > 0 ? " (includes the 1 µs job)" : ""
            print("    ratio pool/concurrentPerform: median \(f(p.median / c.median, 2))×  min \(f(p.min / c.min, 2))×\(overheadNote)"
                  + (jobNanos == 0 ? "  (target ≤ 0.50×: \(p.median / c.median <= 0.5 ? "met" : "NOT met"))" : ""))
            print("    " + PoolReport.summaryLine(stats))
            print("    concurrentPerform really forked (an iteration ran off the calling thread) in "
                  + "\(f(100 * Self.concurrentPerformForkFraction(workers: workers, job: job), 1))% of 2000 rounds")
        }

        // 2. Dense layer, pinned vs unpinned, 1 and all threads, in both weight forms.
        let kernels = try KernelSet.select(.auto)
        let (b, inF, outF) = (256, 784, 512)
        var rng = SplitMix64(seed: 7)
        let x = (0..<(b * inF)).map { _ in rng.nextFloat() - 0.5 }
        let w = (0..<(outF * inF)).map { _ in rng.nextFloat() - 0.5 }
        print("\ndense layer y = x·Wᵀ  B=\(b) \(inF)→\(outF)  kernel=\(kernels.name)  \(reps) calls per row (ms per call)")
        print("  weights packed per call (sgemm) and pre-packed once (inference's form)")
        print("  " + Format.padRight("weights / threads / pinning", 32) + Format.pad("median", 9) + Format.pad("min", 9)
              + Format.pad("p95", 9) + Format.pad("p95/med", 9) + "  migrations  ctx vol/invol  imbalance")
        try x.withUnsafeBufferPointer { xp in
            try w.withUnsafeBufferPointer { wp in
                let layer = DenseLayerCall(x: xp.baseAddress!, w: wp.baseAddress!, b: b, inF: inF, outF: outF)
                for form in DenseLayerCall.Form.allCases {
                    var medians: [String: Double] = [:]
                    let threadCounts = workers > 1 ? [1, workers] : [1]
                    for t in threadCounts {
                        for p in [policy, PinningPolicy.none] {
                            let pool = WorkerPool(workers: t, policy: p, options: options)
                            let call = try layer.prepare(form, engine: GemmEngine(kernels: kernels, executor: pool))
                            for _ in 0..<5 { try call() }
                            pool.resetStatistics()
                            var times: [Double] = []
                            for _ in 0..<reps { times.append(try timeSeconds { try call() }) }
                            let s = Summary(times)!
                            let st = pool.statistics()
                            let name = "\(form.rawValue) / \(t) / \(st.pinned ? p.rawValue : (p == .none ? "none" : "\(p.rawValue)→unpinned"))"
                            medians["\(t)/\(p == .none ? "none" : "pinned")"] = s.median
                            print("  " + Format.padRight(name, 32) + Format.pad(f(s.median * 1e3, 3), 9) + Format.pad(f(s.min * 1e3, 3), 9)
                                  + Format.pad(f(s.p95 * 1e3, 3), 9) + Format.pad(f(s.p95 / s.median, 3), 9)
                                  + Format.pad("\(st.migrations)", 12) + Format.pad("\(st.voluntaryContextSwitches)/\(st.involuntaryContextSwitches)", 15)
                                  + Format.pad(f(st.imbalance, 2), 11))
                        }
                    }
                    guard workers > 1, let one = medians["1/pinned"] else { continue }
                    // The ceiling: every worker runs its own 1-thread layer at once, no fork-join, no sharing of work.
                    // Cores of unequal speed (SMT siblings, a VM's noisy neighbours) and shared caches and memory
                    // bound this, not the pool; a split layer can approach it but not pass it.
                    let ceiling = try layer.ceiling(form, kernels: kernels, workers: workers, policy: policy, options: options)
                    for kind in ["pinned", "none"] {
                        if let all = medians["\(workers)/\(kind)"] {
                            print("  \(form.rawValue): scaling \(workers) vs 1 thread (\(kind)): \(f(one / all, 2))× (median time ratio)"
                                  + (kind == "pinned" ? ", \(f(100 * one / all / ceiling, 0))% of the ceiling" : ""))
                        }
                    }
                    print("  \(form.rawValue): ceiling \(f(ceiling, 2))× — \(workers) independent 1-thread layers at once (pinned "
                          + "\(policy.rawValue)) did that many times the work of one alone (time-boxed, 1 and \(workers) alternated, 2 × 0.4 s each)")
                }
            }
        }
        print("  (migrations: sched_getcpu() before/after every job; context switches: getrusage(RUSAGE_THREAD))")
    }
}

/// One dense-layer call in either weight form, and the machine's ceiling for running many of them at once.
struct DenseLayerCall {
    enum Form: String, CaseIterable { case perCall = "packed per call", prePacked = "pre-packed" }
    let x: UnsafePointer<Float>, w: UnsafePointer<Float>
    let b: Int, inF: Int, outF: Int

    /// A closure that runs one call on `engine` (its own output buffer; pre-packed weights packed here, once).
    func prepare(_ form: Form, engine: GemmEngine) throws -> () throws -> Void {
        let out = AlignedBuffer(capacity: b * outF)
        switch form {
        case .perCall:
            return { [x, w, b, inF, outF] in
                try engine.sgemm(transB: true, m: b, n: outF, k: inF, a: x, lda: inF, b: w, ldb: inF, c: out.pointer, ldc: outF)
            }
        case .prePacked:
            let packed = engine.packWeights(w, n: outF, k: inF, ldw: inF)
            return { [x, b, inF, outF] in
                engine.gemm(m: b, a: .rowMajor(x, ld: inF), packed: packed, c: OutputOperand(base: out.pointer, rowStride: outF))
            }
        }
    }

    /// How many times one thread's work `workers` independent 1-thread layers do at once: time-boxed rates with 1 and
    /// with `workers` workers, alternated twice (ABAB) so drift hits both alike.
    func ceiling(_ form: Form, kernels: KernelSet, workers: Int, policy: PinningPolicy, options: WorkerPool.Options) throws -> Double {
        var one = 0.0, all = 0.0
        for _ in 0..<2 {
            one += try independentRate(form, kernels: kernels, workers: 1, policy: policy, options: options, seconds: 0.4)
            all += try independentRate(form, kernels: kernels, workers: workers, policy: policy, options: options, seconds: 0.4)
        }
        return all / one
    }

    /// Layer calls per second, summed over `workers` pinned workers that each run this layer on one thread (their own
    /// engine and output) all at once for `seconds`.
    func independentRate(_ form: Form, kernels: KernelSet, workers: Int, policy: PinningPolicy,
                         options: WorkerPool.Options, seconds: Double) throws -> Double {
        let pool = WorkerPool(workers: workers, policy: policy, options: options)
        var calls: [() throws -> Void] = []
        for _ in 0..<workers { calls.append(try prepare(form, engine: GemmEngine(kernels: kernels))) }
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: workers * 16)
        defer { counts.deallocate() }
        counts.initialize(repeating: 0, count: workers * 16)
        pool.run(tasks: workers) { t in try? calls[t]() }  // warm-up: first touch on each worker
        let deadline = monotonicNanos() + UInt64(seconds * 1e9)
        let t0 = monotonicNanos()
        pool.run(tasks: workers) { t in
            while monotonicNanos() < deadline { try? calls[t](); counts[t * 16] += 1 }
        }
        let elapsed = Double(monotonicNanos() - t0) * 1e-9
        return Double((0..<workers).reduce(0) { $0 + counts[$1 * 16] }) / elapsed
    }
}

extension PoolBenchCommand {
    /// concurrentPerform lets the caller run iterations itself; for tiny jobs it often runs all of them
    /// before a GCD thread wakes, so its "fork-join" cost is then a serial loop. This says how often not.
    static func concurrentPerformForkFraction(workers: Int, job: (Int) -> Void) -> Double {
        guard workers > 1 else { return 0 }
        let executor = ConcurrentPerformExecutor(workers: workers)
        let threadOf = UnsafeMutablePointer<pthread_t>.allocate(capacity: workers)
        defer { threadOf.deallocate() }
        let box = UncheckedSendableBox(threadOf)
        var forked = 0
        for _ in 0..<2000 {
            executor.run(tasks: workers) { t in job(t); box.value[t] = pthread_self() }
            let me = pthread_self()
            if (0..<workers).contains(where: { threadOf[$0] != me }) { forked += 1 }
        }
        return Double(forked) / 2000
    }
}

/// One line that says whether pinning held, for every command that times work on a `WorkerPool`.
enum PoolReport {
    static func summaryLine(_ s: PoolStatistics) -> String {
        let f = Format.fixed
        let placement = s.pinned
            ? "pinned \(s.policy.rawValue) → PUs \(s.cpus.map(String.init).joined(separator: ","))"
            : "UNPINNED (policy \(s.policy.rawValue))"
        var line = "pool: \(placement) · migrations \(s.migrations)"
        if s.offTargetJobs > 0 { line += " · \(s.offTargetJobs) jobs off their PU" }
        line += " · ctx switches \(s.voluntaryContextSwitches) vol / \(s.involuntaryContextSwitches) invol (\(s.counterSource))"
        line += s.regions == 0
            ? " · no parallel regions (the caller ran everything)"
            : " · utilization \(f(100 * s.utilization, 0))% · imbalance \(f(s.imbalance, 2))"
        if s.workersMoved { line += " · WARNING: workers moved" }
        return line
    }
}
