import ArgumentParser
import DGHarness
import DGKernels
import DGModels
import DGRuntime
import DGReport
import DGStats

/// `dgperf kernel`: times every sparse path against the dense layer measured in the same run.
struct KernelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernel",
        abstract: "Time the sparse-gather and MoE kernel paths against the dense layer (same run).",
        discussion: """
        Gated layer h = ReLU(x·Wᵀ + b), x: B×D, W: H×D. For each cell prints min/median/p95 time,
        realized speedup over the dense layer (median/median), ideal speedup (H·B / active pairs = 1/r)
        and the fraction of ideal reached, plus the strategy each call ran.
        Mask kinds: shared (one unit mask, G = 1), block (shared, G > 1), per-sample (every row its own
        mask; strategy chosen by the calibrated cost model, each forced strategy also timed), learned
        (per-sample masks a trained DynamicGate model's first layer decides on the first B Fashion-MNIST test
        images, --masks-from; their own r and G),
        moe (top-2 of 8 experts unless --top-k/--experts say otherwise, expert hidden = H/4, capacity
        factor 1.25, vs a dense D→H'→D MLP with the same executed MACs).
        Examples:
          dgperf kernel
          dgperf kernel --hidden 512 --batch 32 --active 0.25 --masks block --granularity 16
          dgperf kernel --masks moe --threads 2
          dgperf kernel --masks moe --top-k 1 --batch 1 8 --threads 2
          dgperf kernel --masks learned --masks-from results/weights/dg-lowrank32-l0.2.dgw --hidden 512 --batch 128 --all-strategies
        """
    )

    @Option(parsing: .upToNextOption, help: "Input features D.") var inputs: [Int] = [784]
    @Option(parsing: .upToNextOption, help: "Hidden widths H.") var hidden: [Int] = [512, 2048]
    @Option(parsing: .upToNextOption, help: "Batch sizes B.") var batch: [Int] = [1, 32, 256]
    @Option(parsing: .upToNextOption, help: "Active fractions r in (0, 1].") var active: [Double] = [1, 0.5, 0.25, 0.1]
    @Option(parsing: .upToNextOption, help: "Gate granularities G (units per gate).") var granularity: [Int] = [1, 16, 64]
    @Option(parsing: .upToNextOption, help: "Mask kinds: shared, block, per-sample, moe, learned (needs --masks-from).")
    var masks: [String] = ["shared", "block", "per-sample", "moe"]
    @Option(help: "Trained DynamicGate weights (.dgw) whose first-layer gates give the `learned` masks; --hidden and --inputs must match the model.")
    var masksFrom: String?
    @Option(help: "Folder with the Fashion-MNIST IDX files (for --masks-from).") var dataDir: String = Dataset.defaultDirectory
    @Option(help: "Worker threads.") var threads: Int = 1
    @Option(help: "MoE: experts (each with hidden H/4).") var experts: Int = 8
    @Option(help: "MoE: experts per token (1 = Switch, 2 = GShard).") var topK: Int = 2
    @Option(help: "Timed repetitions per path.") var reps: Int = 15
    @Option(help: "Kernel ISA: auto, avx512 or avx2.") var isa: String = "auto"
    @Option(help: "Seed for weights, inputs and masks.") var seed: UInt64 = 1
    @Flag(help: "Also time each forced per-sample strategy and every shared-mask kernel (weightRows, packedGather, gemv), not only auto.") var allStrategies = false
    @Flag(help: "Print the cost model's predicted times under each auto row.") var predictions = false
    @Flag(help: "Pack weights once (dense baseline, sparse paths and MoE experts alike), as inference would.")
    var prepacked = false
    @Option(help: "Also time layer 2 (K-side sparsity, y = h·Vᵀ, V: classes × H) for this many classes; 0 = off.")
    var layer2Classes: Int = 0

    static let maskKinds = ["shared", "block", "per-sample", "moe", "learned"]

    func validate() throws {
        for d in inputs where d < 1 { throw ValidationError("--inputs must be ≥ 1 (got \(d)); e.g. --inputs 784") }
        for h in hidden where h < 1 { throw ValidationError("--hidden must be ≥ 1 (got \(h)); e.g. --hidden 512") }
        for b in batch where b < 1 { throw ValidationError("--batch must be ≥ 1 (got \(b)); e.g. --batch 32") }
        for r in active where !(r > 0 && r <= 1) {
            throw ValidationError("--active must be in (0, 1] (got \(r)); e.g. --active 0.25")
        }
        for g in granularity where g < 1 { throw ValidationError("--granularity must be ≥ 1 (got \(g)); e.g. --granularity 16") }
        for m in masks where !Self.maskKinds.contains(m) {
            throw ValidationError("--masks: unknown kind '\(m)'; use any of \(Self.maskKinds.joined(separator: ", "))")
        }
        if masks.contains("learned") && masksFrom == nil {
            throw ValidationError("--masks learned needs the trained model whose gates decide the masks: add --masks-from WEIGHTS.dgw")
        }
        if masksFrom != nil && !masks.contains("learned") {
            throw ValidationError("--masks-from gives the learned masks: add learned to --masks (e.g. --masks learned)")
        }
        guard layer2Classes >= 0 else { throw ValidationError("--layer2-classes must be ≥ 0 (got \(layer2Classes)); e.g. --layer2-classes 10") }
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1 (got \(threads))") }
        guard experts >= 1 && experts <= 4096 else { throw ValidationError("--experts must be in 1…4096 (got \(experts)); e.g. --experts 8") }
        guard topK >= 1 && topK <= experts else {
            throw ValidationError("--top-k must be between 1 and --experts (\(experts)) (got \(topK)); e.g. --top-k 2")
        }
        guard reps >= 1 else { throw ValidationError("--reps must be ≥ 1 (got \(reps))") }
        guard ISAChoice(rawValue: isa) != nil else { throw ValidationError("--isa must be one of auto, avx512, avx2 (got '\(isa)')") }
        for h in hidden { for b in batch { for d in inputs where h * max(b, d) >= 1 << 31 {
            throw ValidationError("shape too large: H·max(B, D) must stay below 2^31 elements")
        } } }
        // W and its packed copy, the MoE experts (E × 2 × H/4 × D, packed too) and a few B × H activations.
        var bytes = 0
        for h in hidden { for d in inputs { for b in batch {
            let expertFloats = masks.contains("moe") ? 2 * experts * 2 * max(1, h / 4) * d : 0
            bytes = max(bytes, 4 * (2 * h * d + expertFloats + 4 * b * max(h, d)))
        } } }
        if let message = MemoryCheck.problem(bytes: bytes, what: "the largest cell (weights and their packed copy, MoE experts)",
                                             fix: "use smaller --hidden, --inputs or --experts") {
            throw ValidationError(message)
        }
    }

    func run() throws {
        try requireOptimizedBuild()
        let kernels: KernelSet
        do { kernels = try KernelSet.select(ISAChoice(rawValue: isa)!) } catch { throw ValidationError("\(error)") }
        var learnedModel: (network: Network, data: Dataset)? = nil
        if let path = masksFrom {
            do {
                let file = try WeightFile.read(path: path)
                let spec = file.header.spec
                try LearnedMasks.check(file.network)
                guard hidden == [spec.hidden[0]] && inputs == [spec.inputFeatures] else {
                    throw ValidationError("--masks-from \(path): its first layer is \(spec.inputFeatures) → \(spec.hidden[0]); pass --inputs \(spec.inputFeatures) --hidden \(spec.hidden[0])")
                }
                learnedModel = (file.network, try Dataset.load(.test, directory: dataDir))
            } catch let e as ValidationError { throw e } catch { throw ValidationError("--masks-from: \(error)") }
        }
        let gemm = GemmEngine(kernels: kernels, executor: ExecutorFactory.make(threads: threads))
        let sparse = SparseEngine(gemm: gemm)
        let cached = SparseCostModelCache.default?.load(fingerprint: SparseCostModel.fingerprint(kernels: kernels, workers: threads)) != nil
        let t0 = monotonicNanos()
        let model = sparse.costModel
        let calib = Double(monotonicNanos() - t0) / 1e9
        print("dgperf kernel  kernel=\(kernels.name)  threads=\(threads) (\(ExecutorFactory.pinningPolicy))  \(kernels.blocking)  reps=\(reps)  build=optimized")
        print("cost model: \(cached ? "loaded from cache" : "calibrated in \(Format.fixed(calib * 1e3, 0)) ms") — gemm \(Format.fixed(1 / model.gemmMAC / 1e9, 1)) GMAC/s, gemv \(Format.fixed(1 / model.gemvMAC / 1e9, 1)) GMAC/s, dots \(Format.fixed(1 / model.dotMACNear / 1e9, 1)) GMAC/s (x in L2), gemm call \(Format.fixed(model.gemmCall * 1e6, 2)) µs")
        print("weights: \(prepacked ? "pre-packed once (dense and sparse alike)" : "packed on every call (dense and sparse alike)")")
        if let path = masksFrom { print("learned masks: \(path), first hidden layer on the first B test images of \(dataDir)") }
        print("each path is timed interleaved with the dense layer (A/B per repetition; each sample after an untimed call of its own,")
        print("so neither finds the other's data in cache); speedup = dense median / path median,")
        print("x(min) = dense min / path min; ideal = 1/r (r = active pairs / (B·H)); %ideal = speedup / ideal")
        print("")
        let header = ["D", "H", "B", "mask", "G", "r", "path", "strategy", "min ms", "med ms", "p95 ms", "speedup", "x(min)", "ideal", "%ideal", "paperMAC", "netMAC"]
        let widths = [4, 5, 4, 10, 3, 6, 16, 16, 9, 9, 9, 8, 7, 6, 7, 9, 7]
        func row(_ cells: [String]) {
            print(zip(cells, widths).enumerated().map { i, cw in i < 8 && i != 0 && i != 1 && i != 2 && i != 4 && i != 5 ? Format.padRight(cw.0, cw.1) : Format.pad(cw.0, cw.1) }.joined(separator: " "))
        }
        row(header)
        // Measured bandwidths for the MoE lines' streaming floor, if `dgperf peak` (or `profile`) cached them.
        let limits = masks.contains("moe")
            ? MachineLimitsCache.load(fingerprint: EnvironmentInfo.current(kernels: kernels, dgperfVersion: DGPerfVersion.string).fingerprint)
            : nil
        var rng = SplitMix64(seed: seed)
        for d in inputs {
            for h in hidden {
                let w = randomFloats(h * d, &rng, scale: 1 / Float(d).squareRoot())
                let bias = randomFloats(h, &rng, scale: 0.1)
                for b in batch {
                    let x = randomFloats(b * d, &rng, scale: 1)
                    var out = [Float](repeating: 0, count: b * h)
                    let c2 = layer2Classes
                    let v = randomFloats(max(1, c2) * h, &rng, scale: 1 / Float(h).squareRoot())
                    var y2 = [Float](repeating: 0, count: b * max(1, c2))
                    let hIn = randomFloats(b * h, &rng, scale: 1)
                    let dense2: () throws -> Void = {
                        _ = try sparse.maskedInputLinear(input: hIn, batch: b, units: h, weights: v, bias: nil, outFeatures: c2, mask: .all, output: &y2)
                    }
                    /// Layer 2 with the same mask, timed against the dense layer 2 (rows marked "L2").
                    func layer2(_ kind: String, _ g: Int, _ mask: GateMask) throws {
                        guard c2 > 0 else { return }
                        var report: SparseReport? = nil
                        let (dense, t) = try timePair(dense2) { report = try sparse.maskedInputLinear(input: hIn, batch: b, units: h, weights: v, bias: nil, outFeatures: c2, mask: mask, output: &y2) }
                        printRow(row, d, h, b, kind, g, report!, path: "L2 C=\(c2)", t, dense)
                    }
                    let packed = prepacked ? try sparse.packWeights(w, units: h, inFeatures: d) : nil
                    let denseCall: () throws -> Void = {
                        _ = try sparse.gatedLinear(input: x, batch: b, inFeatures: d, weights: w, bias: bias, units: h, mask: .all, packed: packed, output: &out)
                    }
                    if masks.contains(where: { $0 != "moe" }) {
                        let dense = try time(denseCall)
                        row([String(d), String(h), String(b), "dense", "-", "1.000", "dense", "dense"] + times(dense) + ["1.00", "1.00", "1.00", "100%", "1.000", "1.000"])
                    }
                    /// Auto (and with --all-strategies every forced strategy) on one per-sample mask.
                    func perSampleCells(_ kind: String, _ g: Int, _ mask: GateMask) throws {
                        // With --all-strategies, unit-major runs once per kernel (grouped GEMMs, dot products).
                        var strategies: [(PerSampleStrategy, UnitMajorKernelChoice)] = [(.auto, .auto)]
                        if allStrategies {
                            strategies += [(.denseThenMask, .auto), (.unitMajor, .gemm), (.unitMajor, .dots), (.sampleMajor, .auto), (.hotColdSplit, .auto)]
                        }
                        defer { sparse.unitMajorKernel = .auto }
                        for (s, kernel) in strategies {
                            sparse.unitMajorKernel = kernel
                            var report: SparseReport? = nil
                            let (dense, t) = try timePair(denseCall) { report = try sparse.gatedLinear(input: x, batch: b, inFeatures: d, weights: w, bias: bias, units: h, mask: mask, strategy: s, packed: packed, output: &out) }
                            let path = s == .auto ? "auto" : s == .unitMajor ? "unitMajor/\(kernel.rawValue)" : s.rawValue
                            printRow(row, d, h, b, kind, g, report!, path: path, t, dense)
                            if s == .auto { try layer2(kind, g, mask) }
                            if predictions && s == .auto {
                                let p = report!.predictedSeconds.sorted { $0.key < $1.key }
                                print("    predicted: " + p.map { "\($0.key) \(Format.fixed($0.value * 1e3, 4)) ms" }.joined(separator: ", "))
                            }
                        }
                    }
                    for kind in masks where kind != "moe" {
                        if kind == "learned", let learned = learnedModel {
                            // The model's own gates on the first b test images: their r and G, not the grid's.
                            let m = try LearnedMasks.firstLayer(learned.network, data: learned.data, batch: b, engine: gemm)
                            try perSampleCells(kind, m.granularity, try GateMask.perSample(bits: m.bits, batch: b, granularity: m.granularity, units: m.units))
                            continue
                        }
                        let gs = kind == "shared" ? [1] : (kind == "block" ? granularity.filter { $0 > 1 } : granularity)
                        for g in gs {
                            for r in active {
                                let blocks = (h + g - 1) / g
                                if kind == "per-sample" {
                                    var bits: [UInt8] = []
                                    for _ in 0..<b { bits += chooseBlocks(blocks, fraction: r, &rng) }
                                    try perSampleCells(kind, g, try GateMask.perSample(bits: bits, batch: b, granularity: g, units: h))
                                } else {
                                    let flags = chooseBlocks(blocks, fraction: r, &rng).map { $0 != 0 }
                                    let mask = try GateMask.shared(blockFlags: flags, granularity: g, units: h)
                                    for layout in SparseLayout.allCases {
                                        var report: SparseReport? = nil
                                        let (dense, t) = try timePair(denseCall) { report = try sparse.gatedLinear(input: x, batch: b, inFeatures: d, weights: w, bias: bias, units: h, mask: mask, layout: layout, packed: packed, output: &out) }
                                        printRow(row, d, h, b, kind, g, report!, path: layout.rawValue, t, dense)
                                    }
                                    if allStrategies && b >= 2 {
                                        // Both shared-mask kernels forced (scattered layout), next to the cost model's choice above.
                                        defer { sparse.sharedPath = .auto }
                                        for choice in [SharedPathChoice.weightRows, .packedGather, .gemv] {
                                            sparse.sharedPath = choice
                                            var report: SparseReport? = nil
                                            let (dense, t) = try timePair(denseCall) { report = try sparse.gatedLinear(input: x, batch: b, inFeatures: d, weights: w, bias: bias, units: h, mask: mask, packed: packed, output: &out) }
                                            printRow(row, d, h, b, kind, g, report!, path: choice.rawValue, t, dense)
                                        }
                                    }
                                    try layer2(kind, g, mask)
                                }
                            }
                        }
                    }
                    if masks.contains("moe") { try moe(d: d, h: h, b: b, x: x, gemm: gemm, limits: limits, rng: &rng, row: row) }
                }
            }
        }
    }

    private func printRow(_ row: ([String]) -> Void, _ d: Int, _ h: Int, _ b: Int, _ kind: String, _ g: Int,
                          _ r: SparseReport, path: String, _ t: Summary, _ dense: Summary) {
        let rReal = Double(r.activePairs) / Double(b * h)
        let speedup = dense.median / t.median
        let ideal = r.activePairs == 0 ? Double.infinity : 1 / rReal
        let pct = ideal.isFinite ? Format.fixed(100 * speedup / ideal, 0) + "%" : "-"
        row([String(d), String(h), String(b), kind, String(g), Format.fixed(rReal, 3), path, r.strategy.rawValue]
            + times(t) + [Format.fixed(speedup, 2), Format.fixed(dense.min / t.min, 2), ideal.isFinite ? Format.fixed(ideal, 2) : "inf", pct,
                          Format.fixed(r.paperRelativeMAC, 3), Format.fixed(r.netRelativeMAC, 3)])
    }

    /// MoE top-k of E (default top-2 of 8; expert hidden H/4, capacity 1.25, Dout = D) vs a dense D→H'→D MLP with the
    /// same executed MACs.
    private func moe(d: Int, h: Int, b: Int, x: [Float], gemm: GemmEngine, limits: MachineLimits?, rng: inout SplitMix64,
                     row: ([String]) -> Void) throws {
        let hE = max(1, h / 4)
        let weights = try MoEWeights.random(inFeatures: d, hidden: hE, outFeatures: d, experts: experts, seed: rng.next())
        let config = MoEConfig(experts: experts, topK: topK, capacityFactor: 1.25)
        let engine = MoEEngine(gemm: gemm)
        let packedExperts = prepacked ? engine.pack(weights) : nil
        var y = [Float](repeating: 0, count: b * d)
        var report: MoEReport? = nil
        let moeCall: () throws -> Void = {
            report = try engine.forward(input: x, tokens: b, weights: weights, config: config, packed: packedExperts, output: &y)
        }
        try moeCall()
        let executed = report!.cost.total.macs
        let hEq = max(1, Int((Double(executed) / Double(b * 2 * d)).rounded()))
        let w1 = randomFloats(hEq * d, &rng, scale: 0.03), w2 = randomFloats(d * hEq, &rng, scale: 0.03)
        let p1 = prepacked ? gemm.packWeights(w1, n: hEq, k: d, ldw: d) : nil
        let p2 = prepacked ? gemm.packWeights(w2, n: d, k: hEq, ldw: hEq) : nil
        var hid = [Float](repeating: 0, count: b * hEq)
        let denseCall: () throws -> Void = {
            if let p1, let p2 {
                x.withUnsafeBufferPointer { xp in hid.withUnsafeMutableBufferPointer { hp in y.withUnsafeMutableBufferPointer { yp in
                    gemm.gemm(m: b, a: .rowMajor(xp.baseAddress!, ld: d), packed: p1, c: OutputOperand(base: hp.baseAddress!, rowStride: hEq), epilogue: Epilogue(relu: true))
                    gemm.gemm(m: b, a: .rowMajor(UnsafePointer(hp.baseAddress!), ld: hEq), packed: p2, c: OutputOperand(base: yp.baseAddress!, rowStride: d))
                } } }
            } else {
                try gemm.sgemm(transB: true, m: b, n: hEq, k: d, a: x, lda: d, b: w1, ldb: d, c: &hid, ldc: hEq, epilogue: Epilogue(relu: true))
                try gemm.sgemm(transB: true, m: b, n: d, k: hEq, a: hid, lda: hEq, b: w2, ldb: hEq, c: &y, ldc: d)
            }
        }
        let (tDense, tMoE) = try timePair(denseCall, moeCall)
        let rep = report!
        let ratio = tMoE.median / tDense.median
        row([String(d), String(h), String(b), "dense-eq", "-", "-", "D→\(hEq)→D", "dense"] + times(tDense) + ["-", "-", "-", "-", "-", "-"])
        row([String(d), String(h), String(b), "moe", "-", "-", "top\(topK)/\(experts) H_e=\(hE)", rep.schedule.rawValue] + times(tMoE)
            + [Format.fixed(tDense.median / tMoE.median, 2), Format.fixed(tDense.min / tMoE.min, 2), "-", "-", Format.fixed(Double(rep.cost.useful.macs) / Double(rep.nominalMACs), 3),
               Format.fixed(Double(rep.cost.total.macs) / Double(rep.nominalMACs), 3)])
        print("    moe: time / dense with same executed MACs = \(Format.fixed(ratio, 2))× median, \(Format.fixed(tMoE.min / tDense.min, 2))× min (target ≤ 1.30); load \(rep.load) capacity \(rep.capacity) dropped \(rep.droppedAssignments) assignments (\(rep.droppedTokens) tokens); router MACs \(rep.cost.overhead.macs)")
        let phases = ["router", "dispatch", "experts", "combine"].map { "\($0) \(Format.fixed((rep.phaseSeconds[$0] ?? 0) * 1e3, 4))" }
        print("    moe phases (ms, last call): " + phases.joined(separator: ", ") + "; tokens per expert ≈ \(Format.fixed(Double(b * topK) / Double(experts), 1))")
        // The weights each call must read, and how long that takes at least (machine limits cached by `dgperf peak`).
        let expertBytes = rep.load.filter { $0 > 0 }.count * 2 * hE * d * 4, denseBytes = 2 * hEq * d * 4
        var line = "    moe weights: \(megabytes(expertBytes)) MB of expert weights read per call (dense-equivalent \(megabytes(denseBytes)) MB)"
        if let limits, let floor = limits.streamingFloor(bytes: expertBytes, threads: threads) {
            line += "; reading them takes ≥ \(Format.fixed(floor.seconds * 1e3, 3)) ms at \(Format.fixed(floor.gigabytesPerSecond, 0)) GB/s"
                + " (\(floor.level), \(threads) thread\(threads == 1 ? "" : "s"), measured) = \(Format.fixed(floor.seconds / tDense.median, 2))× the dense-equivalent time"
        } else {
            line += "; run `dgperf peak` once to also print the bandwidth floor"
        }
        print(line)
        // --all-strategies: the other schedule for 2 ≤ busy experts < workers, timed against the same dense layer.
        let busy = rep.load.filter { $0 > 0 }.count
        if allStrategies && busy >= 2 && busy < threads {
            for schedule in MoEEngine.FewExpertsSchedule.allCases where schedule != engine.fewExpertsSchedule {
                let other = MoEEngine(gemm: gemm)
                other.fewExpertsSchedule = schedule
                var ran = ExpertSchedule.serial
                let (tD, tS) = try timePair(denseCall, {
                    ran = try other.forward(input: x, tokens: b, weights: weights, config: config, packed: packedExperts, output: &y).schedule
                })
                row([String(d), String(h), String(b), "moe", "-", "-", "top\(topK)/\(experts) H_e=\(hE)", ran.rawValue]
                    + times(tS) + [Format.fixed(tD.median / tS.median, 2), Format.fixed(tD.min / tS.min, 2), "-", "-", "-", "-"])
                print("    moe \(ran.rawValue): time / dense with same executed MACs = \(Format.fixed(tS.median / tD.median, 2))× median, \(Format.fixed(tS.min / tD.min, 2))× min (same run, against the same dense layer)")
            }
        }
    }

    private func megabytes(_ bytes: Int) -> String { Format.fixed(Double(bytes) / 1e6, 1) }

    private func times(_ s: Summary) -> [String] {
        [Format.fixed(s.min * 1e3, 4), Format.fixed(s.median * 1e3, 4), Format.fixed(s.p95 * 1e3, 4)]
    }

    /// Warm-up (≥ 3 calls and ≥ 20 ms), then `reps` samples, each averaging enough calls to last ≥ 0.5 ms.
    private func time(_ body: () throws -> Void) throws -> Summary {
        try timePair(body, nil).0
    }

    /// Times `base` and `path` interleaved (one sample of each per repetition), so drifting background
    /// load hits both alike; each sample averages enough calls to last ≥ 0.5 ms. The process's first warm-up lasts
    /// 0.3 s (as the sweep's first cell): with 20 ms the first dense row read 0.14 ms where later ones read 0.115.
    private func timePair(_ base: () throws -> Void, _ path: (() throws -> Void)?) throws -> (Summary, Summary) {
        func inner(_ body: () throws -> Void) throws -> Int {
            let t0 = monotonicNanos()
            let warmupNanos: UInt64 = kernelCommandWarmedUp ? 20_000_000 : 300_000_000
            kernelCommandWarmedUp = true
            var w = 0
            while w < 3 || monotonicNanos() - t0 < warmupNanos { try body(); w += 1 }
            return max(1, Int(5e-4 / max(try timeSeconds(body), 1e-9)))
        }
        let nBase = try inner(base)
        let nPath = try path.map { try inner($0) } ?? 1
        var a: [Double] = [], p: [Double] = []
        for _ in 0..<reps {
            // One untimed call first: the sample then starts from this path's own cache state, not the other's (a
            // slow dense call would otherwise leave the pre-packed weights warm for a path that reads them too).
            try base()
            a.append(try timeSeconds { for _ in 0..<nBase { try base() } } / Double(nBase))
            if let path {
                try path()
                p.append(try timeSeconds { for _ in 0..<nPath { try path() } } / Double(nPath))
            }
        }
        let sa = Summary(a)!
        return (sa, Summary(p) ?? sa)
    }
}

/// Whether this process has run its first (long) warm-up; the command is single-threaded.
nonisolated(unsafe) private var kernelCommandWarmedUp = false

/// round(fraction · blocks) distinct random blocks on (at least one), as 0/1 flags.
private func chooseBlocks(_ blocks: Int, fraction: Double, _ rng: inout SplitMix64) -> [UInt8] {
    let k = max(1, min(blocks, Int((fraction * Double(blocks)).rounded())))
    var ids = Array(0..<blocks)
    for i in 0..<k { ids.swapAt(i, i + Int(rng.next() % UInt64(blocks - i))) }
    var flags = [UInt8](repeating: 0, count: blocks)
    for i in 0..<k { flags[ids[i]] = 1 }
    return flags
}

private func randomFloats(_ n: Int, _ rng: inout SplitMix64, scale: Float) -> [Float] {
    (0..<n).map { _ in (rng.nextFloat() * 2 - 1) * scale }
}
