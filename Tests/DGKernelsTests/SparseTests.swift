import XCTest
import Foundation
import DGRuntime
@testable import DGKernels

/// A fixed cost model so strategy choice in tests is deterministic and calibration-free.
let testCostModel = SparseCostModel(fingerprint: "test", mr: (try? KernelSet.select(.auto))?.mr ?? 6,
                                    nr: (try? KernelSet.select(.auto))?.nr ?? 16,
                                    gemmCall: 1e-6, gemmMAC: 1e-11, gemmPack: 1e-10,
                                    gemvCall: 5e-8, gemvMAC: 4e-11, gemvRowMAC: 1.6e-10, passByte: 1e-11)

func makeGemm(threads: Int, isa: ISAChoice = .auto) throws -> GemmEngine {
    let kernels = try KernelSet.select(isa)
    let executor: ParallelExecutor = threads == 1 ? SerialExecutor() : ConcurrentPerformExecutor(workers: threads)
    let engine = GemmEngine(kernels: kernels, executor: executor)
    engine.parallelThresholdMACs = 0  // small test shapes must still exercise the parallel splits
    return engine
}

func makeSparse(threads: Int, isa: ISAChoice = .auto) throws -> SparseEngine {
    SparseEngine(gemm: try makeGemm(threads: threads, isa: isa), costModel: testCostModel, costModelCache: nil)
}

enum MaskPattern: CaseIterable { case allOn, allOff, oneBlock, random, mixedRows }

/// Which (sample, block) pairs are on, for a pattern; per-sample patterns vary by row.
func makeBits(_ pattern: MaskPattern, batch: Int, blocks: Int, perRow: Bool, rng: inout SplitMix64) -> [UInt8] {
    let p = 0.05 + 0.9 * rng.nextDouble()
    func oneRow() -> [UInt8] {
        switch pattern {
        case .allOn: return [UInt8](repeating: 1, count: blocks)
        case .allOff: return [UInt8](repeating: 0, count: blocks)
        case .oneBlock:
            var r = [UInt8](repeating: 0, count: blocks); r[Int(rng.next() % UInt64(blocks))] = 1; return r
        case .random: return (0..<blocks).map { _ in rng.nextDouble() < p ? 1 : 0 }
        case .mixedRows:
            switch rng.next() % 4 {
            case 0: return [UInt8](repeating: 0, count: blocks)
            case 1: return [UInt8](repeating: 1, count: blocks)
            default: return (0..<blocks).map { _ in rng.nextDouble() < p ? 1 : 0 }
            }
        }
    }

    if !perRow { return oneRow() }
    var bits: [UInt8] = []
    let shared = oneRow()
    for _ in 0..<batch { bits += (rng.next() % 5 == 0) ? shared : oneRow() }  // some identical rows
    return bits
}

func randomArray(_ n: Int, _ rng: inout SplitMix64, nanEvery: Int = 0) -> [Float] {
    (0..<n).map { _ in rng.nextFloat() * 2 - 1 }
}

/// |got − want| ≤ tol·(Σ|terms| + 1) elementwise; returns a description of the first failure.
func firstMismatch(_ got: [Float], _ want: [Double], _ scale: [Double], tol: Double = 3e-5) -> String? {
    guard got.count == want.count else { return "count \(got.count) != \(want.count)" }
    for i in got.indices {
        let g = Double(got[i])
        if !(abs(g - want[i]) <= tol * (scale[i] + 1)) { return "element \(i): got \(got[i]) want \(want[i])" }
    }
    return nil
}

final class SparseTests: XCTestCase {
    let batches = [1, 2, 3, 17, 64, 256]
    let granularities = [1, 2, 3, 4, 8, 16, 32, 64]

    /// ≥ 600 randomized cases; every case runs every path (shared layer 1 compact/scattered, shared layer 2
    /// compact/scattered input, per-sample layer 1 and 2 with each strategy and auto) against float64 references.
    func testRandomizedAgainstFloat64Reference() throws {
        // Every kernel set this CPU runs (AVX-512 has the half-panel kernel, AVX2 runs 16-unit blocks as whole panels),
        // 1 and 2 threads.
        var engines: [SparseEngine] = []
        for ks in KernelSet.available() {
            let choice: ISAChoice = ks.isa == .avx512 ? .avx512 : .avx2
            engines += [try makeSparse(threads: 1, isa: choice), try makeSparse(threads: 2, isa: choice)]
        }
        var rng = SplitMix64(seed: 2024)
        var checked = [String: Int]()
        var sawGroupedUnitMajor = false, sawBatchOneShared = false
        for caseIndex in 0..<600 {
            let engine = engines[caseIndex % engines.count]
            let batch = batches[caseIndex % batches.count]
            let g = granularities[Int(rng.next() % UInt64(granularities.count))]
            let d = 1 + Int(rng.next() % 48)
            let c = 1 + Int(rng.next() % 20)
            // Alternate H multiple of G (block-aligned) and not (last block partial).
            var h = 1 + Int(rng.next() % 96)
            if caseIndex % 3 == 0 { h = g * (1 + Int(rng.next() % UInt64(max(1, 96 / g)))) }
            let blocks = (h + g - 1) / g
            let pattern = MaskPattern.allCases[caseIndex % MaskPattern.allCases.count]
            let tag = "case \(caseIndex) B=\(batch) D=\(d) H=\(h) C=\(c) G=\(g) \(pattern) threads=\(caseIndex % 2 + 1) \(engine.gemm.kernels.name)"

            let x = randomArray(batch * d, &rng), w = randomArray(h * d, &rng), bias = randomArray(h, &rng)
            let v = randomArray(c * h, &rng), bias2 = randomArray(c, &rng)
            let pre = Reference.sgemm(transB: true, m: batch, n: h, k: d, a: x, lda: d, b: w, ldb: d)
            let preAbs = Reference.sgemm(transB: true, m: batch, n: h, k: d, a: x.map(abs), lda: d, b: w.map(abs), ldb: d)

            // --- Shared mask ---
            let sharedBits = makeBits(pattern, batch: batch, blocks: blocks, perRow: false, rng: &rng)
            let shared = try GateMask.shared(blockFlags: sharedBits.map { $0 != 0 }, granularity: g, units: h)
            let active = shared.activeUnits.map(Int.init)
            let n = active.count
            // Layer 1 references (scattered and compact).
            var ref1 = [Double](repeating: 0, count: batch * h), scale1 = [Double](repeating: 0, count: batch * h)
            for b in 0..<batch { for u in active {
                ref1[b * h + u] = max(0, pre[b * h + u] + Double(bias[u])); scale1[b * h + u] = preAbs[b * h + u] + abs(Double(bias[u]))
            } }
            let packed = try engine.packWeights(w, units: h, inFeatures: d)
            defer { engine.sharedPath = .auto }
            for path in [SharedPathChoice.packedGather, .weightRows, .gemv] { for pk in [nil, packed] {
                engine.sharedPath = path
                let ptag = tag + (pk == nil ? "" : " packed") + " \(path)"
                var out = [Float](repeating: .nan, count: batch * h)
                let rs = try engine.gatedLinear(input: x, batch: batch, inFeatures: d, weights: w, bias: bias, units: h,
                                                mask: shared, layout: .scattered, packed: pk, output: &out)
                if let m = firstMismatch(out, ref1, scale1) { XCTFail("shared scattered \(ptag) → \(rs.strategy): \(m)"); return }
                XCTAssertEqual(rs.cost.useful.macs, batch * n * d, ptag)
                XCTAssertEqual(rs.cost.total.macs, batch * n * d, ptag)
                checked["shared-scattered\(pk == nil ? "" : "-packed")-\(path)", default: 0] += 1
                if rs.strategy == .sharedPanels { checked["shared-panels", default: 0] += 1 }

                var outC = [Float](repeating: .nan, count: max(1, batch * n))
                let rc = try engine.gatedLinear(input: x, batch: batch, inFeatures: d, weights: w, bias: bias, units: h,
                                                mask: shared, layout: .compact, packed: pk, output: &outC)
                let refC = (0..<batch).flatMap { b in active.map { ref1[b * h + $0] } }
                let scaleC = (0..<batch).flatMap { b in active.map { scale1[b * h + $0] } }
                if let m = firstMismatch(Array(outC.prefix(batch * n)), refC, scaleC) { XCTFail("shared compact \(ptag) → \(rc.strategy): \(m)"); return }
                XCTAssertEqual(rc.cost.total.macs, batch * n * d, ptag)
                checked["shared-compact\(pk == nil ? "" : "-packed")-\(path)", default: 0] += 1
                if batch >= 2 && n > 0 && n < h && rs.strategy != .sharedPanels {
                    let expected: [SharedPathChoice: SparseStrategy] = [.weightRows: .sharedWeightRows, .packedGather: .sharedGather, .gemv: .sharedGemv]
                    XCTAssertEqual(rs.strategy, expected[path], ptag)
                }
            } }

            // Panel-aligned shared mask (G = NR) with pre-packed weights: only the active panels run.
            do {
                let nr = engine.gemm.kernels.nr, panelsCount = (h + nr - 1) / nr
                let flags = makeBits(pattern, batch: 1, blocks: panelsCount, perRow: false, rng: &rng).map { $0 != 0 }
                let pm = try GateMask.shared(blockFlags: flags, granularity: nr, units: h)
                var refA = [Double](repeating: 0, count: batch * h), scaleA = [Double](repeating: 0, count: batch * h)
                for b in 0..<batch { for u in pm.activeUnits.map(Int.init) {
                    refA[b * h + u] = max(0, pre[b * h + u] + Double(bias[u])); scaleA[b * h + u] = preAbs[b * h + u] + abs(Double(bias[u]))
                } }
                var o = [Float](repeating: .nan, count: batch * h)
                let r = try engine.gatedLinear(input: x, batch: batch, inFeatures: d, weights: w, bias: bias, units: h,
                                               mask: pm, packed: packed, output: &o)
                if let m = firstMismatch(o, refA, scaleA) { XCTFail("panel-aligned scattered \(tag) → \(r.strategy): \(m)"); return }
                XCTAssertEqual(r.cost.total.macs, batch * pm.activeUnits.count * d, tag)
                var oc = [Float](repeating: .nan, count: max(1, batch * pm.activeUnits.count))
                try engine.gatedLinear(input: x, batch: batch, inFeatures: d, weights: w, bias: bias, units: h,
                                       mask: pm, layout: .compact, packed: packed, output: &oc)
                let refAC = (0..<batch).flatMap { b in pm.activeUnits.map { refA[b * h + Int($0)] } }
                let scaleAC = (0..<batch).flatMap { b in pm.activeUnits.map { scaleA[b * h + Int($0)] } }
                if let m = firstMismatch(Array(oc.prefix(refAC.count)), refAC, scaleAC) { XCTFail("panel-aligned compact \(tag): \(m)"); return }
                if r.strategy == .sharedPanels { checked["shared-panels", default: 0] += 1 }
            }

            // Layer 2 with the shared mask: scattered input with NaN in inactive columns (must never be read).
            var hScat = [Float](repeating: .nan, count: batch * h)
            var hMasked = [Float](repeating: 0, count: batch * h)
            let hVals = randomArray(batch * h, &rng)
            for b in 0..<batch { for u in active { hScat[b * h + u] = hVals[b * h + u]; hMasked[b * h + u] = hVals[b * h + u] } }
            let (ref2, scale2) = layer2Reference(hMasked, batch: batch, h: h, v: v, bias: bias2, c: c)
            var y = [Float](repeating: .nan, count: batch * c)
            let r2 = try engine.maskedInputLinear(input: hScat, layout: .scattered, batch: batch, units: h, weights: v,
                                                  bias: bias2, outFeatures: c, mask: shared, output: &y)
            if let m = firstMismatch(y, ref2, scale2) { XCTFail("shared layer2 scattered \(tag): \(m)"); return }
            XCTAssertEqual(r2.cost.total.macs, batch * n * c, tag)
            let hComp = (0..<batch).flatMap { b in active.map { hVals[b * h + $0] } }
            y = [Float](repeating: .nan, count: batch * c)
            try engine.maskedInputLinear(input: hComp.isEmpty ? [0] : hComp, layout: .compact, batch: batch, units: h,
                                         weights: v, bias: bias2, outFeatures: c, mask: shared, output: &y)
            if let m = firstMismatch(y, ref2, scale2) { XCTFail("shared layer2 compact \(tag): \(m)"); return }
            checked["shared-layer2", default: 0] += 1

            // --- Per-sample mask ---
            let bits = makeBits(pattern, batch: batch, blocks: blocks, perRow: true, rng: &rng)
            let mask = try GateMask.perSample(bits: bits, batch: batch, granularity: g, units: h)
            var refP = [Double](repeating: 0, count: batch * h), scaleP = [Double](repeating: 0, count: batch * h)
            var hMaskedP = [Float](repeating: 0, count: batch * h), hScatP = [Float](repeating: .nan, count: batch * h)
            var pairs = 0
            for b in 0..<batch { for j in 0..<blocks where bits[b * blocks + j] != 0 {
                for u in (j * g)..<min((j + 1) * g, h) {
                    pairs += 1
                    refP[b * h + u] = max(0, pre[b * h + u] + Double(bias[u]))
                    scaleP[b * h + u] = preAbs[b * h + u] + abs(Double(bias[u]))
                    hMaskedP[b * h + u] = hVals[b * h + u]; hScatP[b * h + u] = hVals[b * h + u]
                }
            } }
            XCTAssertEqual(mask.activePairs(batch: batch, units: h), pairs, tag)
            let (ref2P, scale2P) = layer2Reference(hMaskedP, batch: batch, h: h, v: v, bias: bias2, c: c)
            let nr = engine.gemm.kernels.nr
            // Unit-major runs once per kernel (grouped GEMMs, dot products per unit), the others with the model's pick.
            let runs: [(PerSampleStrategy, UnitMajorKernelChoice)] = PerSampleStrategy.allCases.flatMap {
                $0 == .unitMajor ? [($0, .gemm), ($0, .dots)] : [($0, .auto)]
            }
            // The hot/cold split at a threshold drawn per case (every distinct user count gets its turn over the suite).
            let blockUsers = (0..<blocks).map { j in (0..<batch).reduce(0) { $0 + Int(bits[$1 * blocks + j]) } }
            let hotUsers = 1 + caseIndex % batch
            for (strategy, kernel) in runs { for pk in [nil, packed] {
                let tag = tag + (pk == nil ? "" : " packed") + (strategy == .unitMajor ? " \(kernel)" : "")
                var o = [Float](repeating: .nan, count: batch * h)
                engine.unitMajorKernel = kernel
                engine.hotBlockUsers = hotUsers
                defer { engine.unitMajorKernel = .auto; engine.hotBlockUsers = nil }
                let r = try engine.gatedLinear(input: x, batch: batch, inFeatures: d, weights: w, bias: bias, units: h,
                                               mask: mask, strategy: strategy, packed: pk, output: &o)
                if let m = firstMismatch(o, refP, scaleP) { XCTFail("per-sample L1 \(strategy) → \(r.strategy) \(tag): \(m)"); return }
                XCTAssertEqual(r.cost.useful.macs, pairs * d, tag)
                XCTAssertEqual(r.cost.total.macs, r.cost.useful.macs + r.cost.wasted.macs, tag)
                switch r.strategy {
                case .denseThenMask: XCTAssertEqual(r.cost.total.macs, batch * h * d, tag)
                case .sampleMajor: XCTAssertEqual(r.cost.wasted.macs, 0, tag)
                case .unitMajor:
                    let exact = groupedPairs(bits, batch: batch, blocks: blocks, g: g, h: h, blocksPerGroup: 1)
                    let wide = groupedPairs(bits, batch: batch, blocks: blocks, g: g, h: h, blocksPerGroup: max(1, nr / g))
                    XCTAssertTrue([exact * d, wide * d].contains(r.cost.total.macs), "\(tag): unit-major MACs \(r.cost.total.macs)")
                    if r.cost.total.macs != exact * d { sawGroupedUnitMajor = true }
                case .unitMajorDots:
                    XCTAssertTrue(strategy == .auto || kernel == .dots, "\(tag): dots ran for \(strategy) \(kernel)")
                    XCTAssertEqual(r.cost.wasted.macs, 0, tag)
                case .hotColdSplit where strategy == .auto:
                    break  // the model's own threshold (see testAutoSplitsHotAndColdBlocks)
                case .hotColdSplit:
                    // Hot blocks: every sample's multiply-adds; cold blocks: their users' only.
                    var executed = 0
                    for j in 0..<blocks {
                        let width = min((j + 1) * g, h) - j * g
                        executed += (blockUsers[j] >= hotUsers ? batch : blockUsers[j]) * width * d
                    }
                    XCTAssertEqual(r.cost.total.macs, executed, tag)
                case .sharedRuns, .sharedPanels, .sharedGather, .dense:
                    // One sample's mask is a shared mask: `.auto` takes the shared paths at batch 1.
                    XCTAssertTrue(strategy == .auto && batch == 1, "\(tag): \(strategy) ran the shared path \(r.strategy)")
                    XCTAssertEqual(r.cost.wasted.macs, 0, tag)
                    sawBatchOneShared = true
                default: XCTFail("unexpected strategy \(r.strategy)")
                }
                if strategy != .auto {
                    let expected = strategy == .unitMajor && kernel == .dots ? SparseStrategy.unitMajorDots.rawValue : strategy.rawValue
                    XCTAssertEqual(r.strategy.rawValue, expected, tag)
                }
                let kernelTag = strategy == .unitMajor ? "-\(kernel)" : ""
                checked["per-sample-L1-\(strategy)\(kernelTag)\(pk == nil ? "" : "-packed")", default: 0] += 1
                guard pk == nil else { continue }

                var yP = [Float](repeating: .nan, count: batch * c)
                let q = try engine.maskedInputLinear(input: hScatP, batch: batch, units: h, weights: v, bias: bias2,
                                                     outFeatures: c, mask: mask, strategy: strategy, output: &yP)
                if let m = firstMismatch(yP, ref2P, scale2P) { XCTFail("per-sample L2 \(strategy) → \(q.strategy) \(tag): \(m)"); return }
                XCTAssertEqual(q.cost.useful.macs, pairs * c, tag)
                XCTAssertEqual(q.cost.total.macs, q.strategy == .denseThenMask ? batch * h * c : pairs * c, tag)
                checked["per-sample-L2-\(strategy)\(kernelTag)", default: 0] += 1
            } }

            // --- All-on mask: the plain dense path ---
            if caseIndex % 10 == 0 {
                var o = [Float](repeating: .nan, count: batch * h)
                let r = try engine.gatedLinear(input: x, batch: batch, inFeatures: d, weights: w, bias: bias, units: h,
                                               mask: .all, output: &o)
                let ref = (0..<(batch * h)).map { max(0, pre[$0] + Double(bias[$0 % h])) }
                if let m = firstMismatch(o, ref, (0..<(batch * h)).map { preAbs[$0] + 1 }) { XCTFail("all \(tag): \(m)"); return }
                XCTAssertEqual(r.strategy, .dense)
                XCTAssertEqual(r.paperRelativeMAC, 1)
            }
        }
        for (path, count) in checked where path != "shared-panels" { XCTAssertGreaterThanOrEqual(count, 500, path) }
        XCTAssertGreaterThanOrEqual(checked["shared-panels"] ?? 0, 50, "the pre-packed panel path was rarely exercised")
        XCTAssertTrue(sawGroupedUnitMajor, "the grouped unit-major path was never exercised")
        XCTAssertTrue(sawBatchOneShared, "a batch-1 per-sample mask never took the shared path")
    }

    /// The unit-major dot kernel against float64 dot products: every ISA, rows 1…5 sharing a sample list, 1…11 samples
    /// (tiles of four, remainders 1–3, repeats allowed), depths 1…300 (scalar tail only, one vector, the paired and
    /// quad loops, primes), bias and ReLU on and off; entries of y it must not write stay NaN.
    func testRowSamplesKernelAgainstFloat64() throws {
        var rng = SplitMix64(seed: 77)
        for ks in KernelSet.available() {
            for trial in 0..<300 {
                let rows = 1 + Int(rng.next() % 5), n = 1 + Int(rng.next() % 11)
                let k = [1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 131, 257, 300][trial % 16]
                let batch = 1 + Int(rng.next() % 24), ldw = k + Int(rng.next() % 3), ldy = rows + Int(rng.next() % 4)
                let x = randomArray(batch * k, &rng), w = randomArray(rows * ldw, &rng), bias = randomArray(rows, &rng)
                let samples = (0..<n).map { _ in Int32(rng.next() % UInt64(batch)) }
                let useBias = trial % 3 != 0, relu = trial % 2 == 0
                var y = [Float](repeating: .nan, count: batch * ldy)
                x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in samples.withUnsafeBufferPointer { sp in
                    bias.withUnsafeBufferPointer { bp in y.withUnsafeMutableBufferPointer { yp in
                        ks.rowSamplesGemv(rows, n, k, wp.baseAddress!, ldw, sp.baseAddress!, xp.baseAddress!, k, yp.baseAddress!, ldy,
                                          useBias ? bp.baseAddress! : nil, relu)
                    } }
                } } }
                var written = Set<Int>()
                for i in 0..<n { for r in 0..<rows {
                    let b = Int(samples[i])
                    var dot = useBias ? Double(bias[r]) : 0, scale = useBias ? abs(Double(bias[r])) : 0
                    for j in 0..<k { dot += Double(w[r * ldw + j]) * Double(x[b * k + j]); scale += abs(Double(w[r * ldw + j]) * Double(x[b * k + j])) }
                    if relu { dot = max(0, dot) }
                    let got = Double(y[b * ldy + r])
                    XCTAssertLessThanOrEqual(abs(got - dot), 1e-5 * (scale + 1), "\(ks.name) trial \(trial) rows \(rows) n \(n) k \(k) sample \(i) row \(r)")
                    written.insert(b * ldy + r)
                } }
                for i in 0..<y.count where !written.contains(i) { XCTAssertTrue(y[i].isNaN, "\(ks.name) trial \(trial): wrote y[\(i)]") }
            }
        }
    }

    /// The packed gather's split of n active units: whole panels, a narrow tail (AVX-512 only: a half panel, or a panel
    /// and a half when whole panels precede it) and ≤ 8 gemv rows, so the blocked GEMM never pads more than it must;
    /// every unit is covered exactly once.
    func testGatherPlanCoversEveryUnitOnce() throws {
        for isa in KernelSet.available().map(\.isa) {
            let engine = try makeSparse(threads: 1, isa: isa == .avx512 ? .avx512 : .avx2)
            let nr = engine.gemm.kernels.nr
            for n in 1...200 {
                let plan = engine.gatherPlan(active: n)
                XCTAssertEqual(plan.lead + plan.tail + plan.gemvRows, n, "\(isa) n \(n)")
                XCTAssertEqual(plan.lead % nr, plan.tail == 0 && plan.gemvRows == 0 ? n % nr : 0, "\(isa) n \(n): \(plan)")
                XCTAssertTrue(plan.tail <= nr / 2 || (plan.tail > nr && plan.tail <= nr + nr / 2), "\(isa) n \(n): \(plan)")
                XCTAssertTrue(plan.gemvRows <= SparseEngine.gatherGemvRows, "\(isa) n \(n): \(plan)")
                if !engine.gemm.hasHalfPanelKernel { XCTAssertEqual(plan, .init(lead: n), "\(isa) n \(n)") }
            }
            if engine.gemm.hasHalfPanelKernel {
                XCTAssertEqual(engine.gatherPlan(active: 51), .init(lead: 0, tail: 48, gemvRows: 3))
                XCTAssertEqual(engine.gatherPlan(active: 112), .init(lead: 64, tail: 48))
                XCTAssertEqual(engine.gatherPlan(active: 13), .init(lead: 0, tail: 13))
                XCTAssertEqual(engine.gatherPlan(active: 35), .init(lead: 32, gemvRows: 3))
                XCTAssertEqual(engine.gatherPlan(active: 60), .init(lead: 60))
            }
        }
    }

    /// The packed gather with every part of its plan at once — whole panels, then a half panel or a panel and a half
    /// (which start after the whole panels in the packed active rows), then gemv rows — on every kernel set, 1 and 2
    /// threads, compact and scattered, scattered active units (G = 1) and 16-unit blocks, with and without bias.
    func testPackedGatherPlanPartsTogether() throws {
        var rng = SplitMix64(seed: 77)
        for ks in KernelSet.available() { for threads in [1, 2] {
            let engine = try makeSparse(threads: threads, isa: ks.isa == .avx512 ? .avx512 : .avx2)
            engine.gemm.parallelThresholdMACs = 1 << 10
            engine.sharedPath = .packedGather
            defer { engine.sharedPath = .auto }
            let h = 240, d = 37
            for (n, batch) in [(48, 13), (80, 64), (85, 7), (112, 40), (150, 33), (176, 5)] {
                let x = randomArray(batch * d, &rng), w = randomArray(h * d, &rng), bias = randomArray(h, &rng)
                let pre = Reference.sgemm(transB: true, m: batch, n: h, k: d, a: x, lda: d, b: w, ldb: d)
                // n units out of h: every other unit first (scattered rows), the rest from the top.
                var flags = [Bool](repeating: false, count: h)
                var picked = 0
                for u in stride(from: 0, to: h, by: 2) where picked < n { flags[u] = true; picked += 1 }
                for u in stride(from: h - 1, through: 0, by: -1) where picked < n && !flags[u] { flags[u] = true; picked += 1 }
                let mask = try GateMask.shared(blockFlags: flags, granularity: 1, units: h)
                let active = mask.activeUnits.map(Int.init)
                XCTAssertEqual(active.count, n)
                for withBias in [true, false] {
                    let tag = "\(ks.name) threads \(threads) n \(n) B \(batch) bias \(withBias) plan \(engine.gatherPlan(active: n))"
                    var compact = [Float](repeating: .nan, count: batch * n)
                    var scattered = [Float](repeating: .nan, count: batch * h)
                    try bias.withUnsafeBufferPointer { bp in
                        let b = withBias ? bp.baseAddress : nil
                        try engine.gatedLinear(input: x, batch: batch, inFeatures: d, weights: w, bias: b, units: h, mask: mask,
                                               layout: .compact, output: &compact)
                        try engine.gatedLinear(input: x, batch: batch, inFeatures: d, weights: w, bias: b, units: h, mask: mask,
                                               layout: .scattered, output: &scattered)
                    }
                    for i in 0..<batch {
                        for (j, u) in active.enumerated() {
                            let want = max(0, pre[i * h + u] + (withBias ? Double(bias[u]) : 0))
                            XCTAssertEqual(Double(compact[i * n + j]), want, accuracy: 1e-4 * Double(d), "compact \(tag) (\(i), \(u))")
                            XCTAssertEqual(scattered[i * h + u], compact[i * n + j], "scattered \(tag) (\(i), \(u))")
                        }
                        for u in 0..<h where !flags[u] { XCTAssertEqual(scattered[i * h + u], 0, "scattered gap \(tag) (\(i), \(u))") }
                    }
                }
            }
        } }
    }

    /// The per-sample mask statistics the cost model reads (counted 16 bytes at a time, flushed every 255 rows) against
    /// plain loops: widths around 16, more than 255 rows, more than 255 × 16 blocks, all on, all off, random.
    func testMaskStatsMatchPlainCounts() throws {
        var rng = SplitMix64(seed: 99)
        let engine = try makeSparse(threads: 2)
        // density −1: alternating on/off blocks (a run start in every other block: the most starts per counter lane).
        for (batch, units, g, density) in [(1, 1, 1, 0.5), (3, 17, 1, 0.5), (300, 33, 1, 0.3), (2, 4100, 1, 0.9), (257, 512, 16, 0.2),
                                          (5, 100, 7, 1.0), (4, 64, 1, 0.0), (256, 2048, 1, 0.1), (17, 47, 4, 0.6),
                                          (600, 40, 1, 1.0), (2, 8200, 1, -1), (37, 2000, 1, 0.3)] {
            let blocks = (units + g - 1) / g
            let bits = (0..<(batch * blocks)).map { i in
                density < 0 ? UInt8((i % blocks) % 2) : UInt8(Double(rng.nextFloat()) < density ? 1 : 0)
            }
            let mask = try GateMask.perSample(bits: bits, batch: batch, granularity: g, units: units)
            for wide in [1, 2, 32] {
                let stats = MaskStats(mask, wideBlocksPerGroup: wide)
                var users = [Int](repeating: 0, count: blocks), wideUsers = [Int](repeating: 0, count: (blocks + wide - 1) / wide)
                var runs = 0, pairs = 0
                for b in 0..<batch {
                    for j in 0..<blocks where bits[b * blocks + j] != 0 {
                        users[j] += 1
                        pairs += min((j + 1) * g, units) - j * g
                        if j == 0 || bits[b * blocks + j - 1] == 0 { runs += 1 }
                    }
                    for gi in 0..<wideUsers.count where (gi * wide..<min((gi + 1) * wide, blocks)).contains(where: { bits[b * blocks + $0] != 0 }) {
                        wideUsers[gi] += 1
                    }
                }
                let tag = "batch \(batch) units \(units) G \(g) density \(density) wide \(wide)"
                XCTAssertEqual(stats.blockUsers, users, tag)
                XCTAssertEqual(stats.wideUsers, wideUsers, tag)
                XCTAssertEqual(stats.runs, runs, tag)
                XCTAssertEqual(stats.activePairs, pairs, tag)
                XCTAssertEqual(stats.leftoverRows, MaskStats(mask, wideBlocksPerGroup: wide).leftoverRows, tag)
                // Counted over the workers (the engine splits masks of ≥ 2^16 flags; smaller ones count on the caller):
                // partial counts over row ranges merge to the same totals.
                let split = engine.maskStats(mask, wideBlocksPerGroup: wide)
                XCTAssertEqual(split.blockUsers, users, tag + " (engine)")
                XCTAssertEqual(split.wideUsers, wideUsers, tag + " (engine)")
                XCTAssertEqual(split.runs, runs, tag + " (engine)")
                XCTAssertEqual(split.activePairs, pairs, tag + " (engine)")
                XCTAssertEqual(split.leftoverRows, stats.leftoverRows, tag + " (engine)")
                if batch >= 3 {
                    var merged = MaskStats(mask, wideBlocksPerGroup: wide, rows: 0..<(batch / 3))
                    merged.merge(MaskStats(mask, wideBlocksPerGroup: wide, rows: (batch / 3)..<batch))
                    XCTAssertEqual(merged.blockUsers, users, tag + " (merged)")
                    XCTAssertEqual(merged.wideUsers, wideUsers, tag + " (merged)")
                    XCTAssertEqual(merged.runs, runs, tag + " (merged)")
                    XCTAssertEqual(merged.activePairs, pairs, tag + " (merged)")
                }
            }
        }
    }

    /// Unit-major groups (filled as a counting sort from the mask statistics' user counts) against a plain loop:
    /// each group's sample list in order, its unit range, and the computed pairs; narrow and wide groups, a partial
    /// last group, rows of more and fewer than eight blocks, all on, all off.
    func testUnitGroupsMatchPlainLoop() throws {
        var rng = SplitMix64(seed: 7)
        let engine = try makeSparse(threads: 2)
        var sawSplit = false
        for (batch, units, g, density) in [(1, 1, 1, 0.5), (3, 17, 1, 0.5), (32, 512, 16, 0.1), (17, 47, 4, 0.6),
                                          (5, 100, 7, 1.0), (4, 64, 1, 0.0), (64, 2048, 16, 0.25), (9, 300, 3, 0.2),
                                          (33, 2500, 1, 0.1), (40, 1800, 1, 0.6)] {
            let blocks = (units + g - 1) / g
            let bits = (0..<(batch * blocks)).map { _ in UInt8(Double(rng.nextFloat()) < density ? 1 : 0) }
            let mask = try GateMask.perSample(bits: bits, batch: batch, granularity: g, units: units)
            for bpg in [1, 2, 3, 32] {
                let stats = MaskStats(mask, wideBlocksPerGroup: bpg)
                let groups = UnitGroups(mask, blocksPerGroup: bpg, users: bpg == 1 ? stats.blockUsers : stats.wideUsers)
                var lo: [Int] = [], hi: [Int] = [], rows: [[Int32]] = [], pairs = 0
                for j0 in stride(from: 0, to: blocks, by: bpg) {
                    let j1 = min(j0 + bpg, blocks)
                    let users = (0..<batch).filter { b in (j0..<j1).contains { bits[b * blocks + $0] != 0 } }.map { Int32($0) }
                    guard !users.isEmpty else { continue }
                    lo.append(j0 * g); hi.append(min(j1 * g, units)); rows.append(users)
                    pairs += users.count * (min(j1 * g, units) - j0 * g)
                }
                let tag = "batch \(batch) units \(units) G \(g) density \(density) blocks per group \(bpg)"
                XCTAssertEqual(groups.lo, lo, tag)
                XCTAssertEqual(groups.hi, hi, tag)
                XCTAssertEqual((0..<groups.count).map { Array(groups.rows[groups.rowOffsets[$0]..<groups.rowOffsets[$0 + 1]]) }, rows, tag)
                XCTAssertEqual(groups.rowOffsets.last, groups.rows.count, tag)
                XCTAssertEqual(groups.computedPairs, pairs, tag)
                // Filled on the workers (each its own range of groups) for masks of ≥ 2^16 flags.
                let parallel = UnitGroups(mask, blocksPerGroup: bpg, users: bpg == 1 ? stats.blockUsers : stats.wideUsers,
                                          executor: engine.gemm.executor)
                if batch * blocks >= SparseEngine.parallelMaskFlags { sawSplit = true }
                XCTAssertEqual(parallel.lo, lo, tag + " (split)")
                XCTAssertEqual((0..<parallel.count).map { Array(parallel.rows[parallel.rowOffsets[$0]..<parallel.rowOffsets[$0 + 1]]) },
                               rows, tag + " (split)")
                // Without some blocks (hotColdSplit's cold part): the same lists, minus those blocks'.
                guard bpg == 1 else { continue }
                let keepBlocks = (0..<blocks).map { UInt8($0 % 3 == 1 ? 0 : 1) }
                let cold = mask.keepingBlocks(keepBlocks)
                XCTAssertEqual(cold.bits, bits.indices.map { bits[$0] & keepBlocks[$0 % blocks] }, tag + " (cold mask)")
                let coldGroups = UnitGroups(cold, blocksPerGroup: 1, users: MaskStats(cold, wideBlocksPerGroup: 1).blockUsers,
                                            executor: engine.gemm.executor)
                let kept = lo.indices.filter { keepBlocks[lo[$0] / g] != 0 }
                XCTAssertEqual(coldGroups.lo, kept.map { lo[$0] }, tag + " (cold)")
                XCTAssertEqual((0..<coldGroups.count).map { Array(coldGroups.rows[coldGroups.rowOffsets[$0]..<coldGroups.rowOffsets[$0 + 1]]) },
                               kept.map { rows[$0] }, tag + " (cold)")
            }
        }
        XCTAssertTrue(sawSplit, "no mask was large enough to split")
    }

    /// The packed gather's full-width output on both ISAs (AVX-512 expands each compact row sixteen units at a time;
    /// AVX2 fills and stores per unit) against float64: unit masks dense enough for the expand, widths that are not a
    /// multiple of 16, 1 and 2 threads.
    func testSharedGatherScatteredRowsOnEveryISA() throws {
        var rng = SplitMix64(seed: 33)
        for isa in KernelSet.available().map(\.isa) {
            for (batch, h, r, threads) in [(64, 300, 0.5, 1), (17, 47, 0.3, 2), (3, 1000, 0.9, 1), (40, 16, 0.5, 2), (9, 33, 0.25, 1)] {
                let engine = try makeSparse(threads: threads, isa: isa == .avx512 ? .avx512 : .avx2)
                engine.sharedPath = .packedGather
                let d = 37
                let x = randomArray(batch * d, &rng), w = randomArray(h * d, &rng), bias = randomArray(h, &rng)
                let active = (0..<h).filter { _ in rng.nextDouble() < r }.map { Int32($0) }
                let mask = try GateMask.shared(activeBlocks: active, granularity: 1, units: h)
                var o = [Float](repeating: .nan, count: batch * h)
                let rep = try engine.gatedLinear(input: x, batch: batch, inFeatures: d, weights: w, bias: bias, units: h,
                                                 mask: mask, layout: .scattered, output: &o)
                XCTAssertEqual(rep.strategy, .sharedGather)
                let pre = Reference.sgemm(transB: true, m: batch, n: h, k: d, a: x, lda: d, b: w, ldb: d)
                let on = Set(active)
                for b in 0..<batch { for u in 0..<h {
                    let want = on.contains(Int32(u)) ? max(0, pre[b * h + u] + Double(bias[u])) : 0
                    XCTAssertEqual(Double(o[b * h + u]), want, accuracy: 1e-4 * Double(d), "\(isa) B=\(batch) H=\(h) (\(b), \(u))")
                } }
            }
        }
    }

    /// Auto splits a mask with a few blocks used by most samples and many used by few (as learned gates give): the hot
    /// ones as the shared GEMM, the rest as dot products; results against float64 and the MAC split in closed form.
    func testAutoSplitsHotAndColdBlocks() throws {
        var model = testCostModel
        model.dotMACNear = 4e-11; model.dotMACFar = 4e-11; model.dotNearBytes = 1; model.dotFarBytes = 2
        model.dotMACHot = 2e-11
        model.rowsCall = 1e-6; model.rowsMAC = 1e-11
        let engine = SparseEngine(gemm: try makeGemm(threads: 1), costModel: model, costModelCache: nil)
        var rng = SplitMix64(seed: 21)
        for (batch, h, g) in [(64, 256, 1), (32, 300, 4)] {
            let d = 96, blocks = (h + g - 1) / g
            let x = randomArray(batch * d, &rng), w = randomArray(h * d, &rng), bias = randomArray(h, &rng)
            // Every eighth block on for 90 % of the samples, the rest for 3 %.
            let bits = (0..<(batch * blocks)).map { i in UInt8(rng.nextDouble() < (i % blocks % 8 == 0 ? 0.9 : 0.03) ? 1 : 0) }
            let mask = try GateMask.perSample(bits: bits, batch: batch, granularity: g, units: h)
            var o = [Float](repeating: .nan, count: batch * h)
            let r = try engine.gatedLinear(input: x, batch: batch, inFeatures: d, weights: w, bias: bias, units: h,
                                           mask: mask, output: &o)
            XCTAssertEqual(r.strategy, .hotColdSplit, "\(r.predictedSeconds)")
            let pre = Reference.sgemm(transB: true, m: batch, n: h, k: d, a: x, lda: d, b: w, ldb: d)
            for b in 0..<batch { for u in 0..<h {
                let want = bits[b * blocks + u / g] != 0 ? max(0, pre[b * h + u] + Double(bias[u])) : 0
                XCTAssertEqual(Double(o[b * h + u]), want, accuracy: 1e-4 * Double(d), "B=\(batch) G=\(g) (\(b), \(u))")
            } }
            let users = (0..<blocks).map { j in (0..<batch).reduce(0) { $0 + Int(bits[$1 * blocks + j]) } }
            // The executed MACs match one threshold: hot blocks for the whole batch, cold ones for their users.
            let executed = (1...batch).map { t in
                (0..<blocks).reduce(0) { $0 + (users[$1] >= t ? batch : users[$1]) * (min(($1 + 1) * g, h) - $1 * g) } * d
            }
            XCTAssertTrue(executed.contains(r.cost.total.macs), "\(r.cost.total.macs)")
            XCTAssertLessThan(r.cost.total.macs, batch * h * d / 2, "most blocks ran cold")
            XCTAssertEqual(r.cost.useful.macs, mask.activePairs(batch: batch, units: h) * d)
        }
    }

    /// The multi-sample gathered gemv on its own: k around the vector width and layer-sized, sample counts around
    /// the register tile (4 on AVX-512, 2 on AVX2), row groups with a partial last group, compact and scattered.
    func testMultiSampleGemvMatchesFloat64Reference() throws {
        var rng = SplitMix64(seed: 31)
        var checked = 0
        for ks in KernelSet.available() {
            for k in [1, 7, 8, 15, 16, 17, 100, 784] { for m in [2, 3, 4, 5, 9, 16] { for n in [1, 3, 4, 5, 13] {
                let h = n + 3 + Int(rng.next() % 5)
                let x = randomArray(m * k, &rng), w = randomArray(h * k, &rng), bias = randomArray(h, &rng)
                let rows = Array((0..<h).shuffled(using: &rng).prefix(n)).sorted().map(Int32.init)
                let scatter = (k + m + n) % 2 == 0, ldy = scatter ? h : n
                var y = [Float](repeating: .nan, count: m * ldy)
                x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in bias.withUnsafeBufferPointer { bp in
                    rows.withUnsafeBufferPointer { rp in y.withUnsafeMutableBufferPointer { yp in
                        ks.indexedGemvMulti(n, k, wp.baseAddress!, k, rp.baseAddress!, m, xp.baseAddress!, k,
                                            yp.baseAddress!, ldy, scatter, bp.baseAddress!, true)
                    } }
                } } }
                for s in 0..<m { for (i, u) in rows.enumerated() {
                    var dot = 0.0, scale = 0.0
                    for j in 0..<k { dot += Double(x[s * k + j]) * Double(w[Int(u) * k + j]); scale += abs(Double(x[s * k + j] * w[Int(u) * k + j])) }
                    let want = max(0, dot + Double(bias[Int(u)]))
                    let got = Double(y[s * ldy + (scatter ? Int(u) : i)])
                    XCTAssertEqual(got, want, accuracy: 3e-5 * (scale + 1), "\(ks.name) k=\(k) m=\(m) n=\(n) sample \(s) unit \(u)")
                } }
                checked += 1
            } } }
        }
        XCTAssertGreaterThanOrEqual(checked, 240)
    }

    /// A few layer-sized cases (D = 784) on 2 threads, including unaligned H and every strategy.
    func testLargeShapes() throws {
        let engine = try makeSparse(threads: 2)
        engine.gemm.parallelThresholdMACs = 1 << 17
        var rng = SplitMix64(seed: 99)
        for (batch, h, g) in [(32, 512, 16), (1, 500, 64), (64, 300, 1)] {
            let d = 784
            let x = randomArray(batch * d, &rng), w = randomArray(h * d, &rng), bias = randomArray(h, &rng)
            let pre = Reference.sgemm(transB: true, m: batch, n: h, k: d, a: x, lda: d, b: w, ldb: d)
            let blocks = (h + g - 1) / g
            let bits = (0..<(batch * blocks)).map { _ in UInt8(rng.nextDouble() < 0.25 ? 1 : 0) }
            let mask = try GateMask.perSample(bits: bits, batch: batch, granularity: g, units: h)
            var ref = [Double](repeating: 0, count: batch * h)
            for b in 0..<batch { for j in 0..<blocks where bits[b * blocks + j] != 0 {
                for u in (j * g)..<min((j + 1) * g, h) { ref[b * h + u] = max(0, pre[b * h + u] + Double(bias[u])) }
            } }
            for strategy in PerSampleStrategy.allCases {
                var o = [Float](repeating: .nan, count: batch * h)
                try engine.gatedLinear(input: x, batch: batch, inFeatures: d, weights: w, bias: bias, units: h,
                                       mask: mask, strategy: strategy, output: &o)
                if let m = firstMismatch(o, ref, [Double](repeating: 30, count: ref.count)) { XCTFail("large \(strategy) B=\(batch) H=\(h): \(m)") }
            }
            let sharedMask = try GateMask.shared(blockFlags: (0..<blocks).map { $0 % 3 == 0 }, granularity: g, units: h)
            var o = [Float](repeating: .nan, count: batch * h)
            let r = try engine.gatedLinear(input: x, batch: batch, inFeatures: d, weights: w, bias: bias, units: h,
                                           mask: sharedMask, output: &o)
            for b in 0..<batch { for u in 0..<h {
                let on = sharedMask.activeUnits.contains(Int32(u))
                let want = on ? max(0, pre[b * h + u] + Double(bias[u])) : 0
                XCTAssertEqual(Double(o[b * h + u]), want, accuracy: 1e-3 * 30, "large shared B=\(batch) H=\(h) (\(b),\(u))")
            } }
            XCTAssertEqual(r.cost.useful.macs, batch * sharedMask.activeUnits.count * d)
            XCTAssertEqual(r.paperRelativeMAC, Double(sharedMask.activeUnits.count) / Double(h), accuracy: 1e-12)
        }
    }

    func testMaskValidationErrors() throws {
        func message(_ body: () throws -> Any) -> String {
            do { _ = try body(); return "" } catch { return "\(error)" }
        }
        XCTAssertTrue(message { try GateMask.shared(activeBlocks: [0], granularity: 0, units: 8) }.contains("granularity"))
        XCTAssertTrue(message { try GateMask.shared(activeBlocks: [0], granularity: -3, units: 8) }.contains("≥ 1"))
        XCTAssertTrue(message { try GateMask.shared(activeBlocks: [3], granularity: 4, units: 10) }.contains("out of range"))
        XCTAssertTrue(message { try GateMask.shared(activeBlocks: [-1], units: 10) }.contains("out of range"))
        XCTAssertTrue(message { try GateMask.shared(activeBlocks: [2, 1], units: 10) }.contains("sorted"))
        XCTAssertTrue(message { try GateMask.shared(activeBlocks: [1, 1], units: 10) }.contains("sorted"))
        XCTAssertTrue(message { try GateMask.shared(blockFlags: [true], granularity: 4, units: 10) }.contains("needs 3"))
        XCTAssertTrue(message { try GateMask.perSample(bits: [1, 0, 1], batch: 2, granularity: 4, units: 10) }.contains("needs 6"))
        XCTAssertTrue(message { try GateMask.perSample(bits: [], batch: 0, units: 10) }.contains("batch"))
        XCTAssertTrue(message { try GateMask.perSample(packed: [0, 0], batch: 2, units: 10) }.contains("packed"))
        // Partial last block is fine: 10 units, G = 4 → blocks 0..2, block 2 = units 8, 9.
        let m = try GateMask.shared(activeBlocks: [2], granularity: 4, units: 10)
        XCTAssertEqual(m.activeUnits, [8, 9])
        let p = try GateMask.perSample(packed: [0b1001], batch: 2, granularity: 4, units: 10)
        XCTAssertEqual(p.bits, [1, 0, 0, 1, 0, 0])

        var out = [Float](repeating: 0, count: 100)
        // Non-0/1 flags are normalised to 1.
        XCTAssertEqual(try GateMask.perSample(bits: [0, 7, 255, 1], batch: 2, granularity: 5, units: 10).bits, [0, 1, 1, 1])
        // … also where the check runs sixteen bytes at a time (a stray value in the vector part or in the tail).
        for position in [0, 17, 31, 37] {
            var flags = (0..<40).map { UInt8($0 % 3 == 0 ? 1 : 0) }
            let expected = flags.enumerated().map { $0.offset == position ? UInt8(1) : $0.element }
            flags[position] = 2
            XCTAssertEqual(try GateMask.perSample(bits: flags, batch: 4, granularity: 1, units: 10).bits, expected, "at \(position)")
        }
        let zeroOne = (0..<40).map { UInt8($0 % 3 == 0 ? 1 : 0) }
        XCTAssertEqual(try GateMask.perSample(bits: zeroOne, batch: 4, granularity: 1, units: 10).bits, zeroOne)

        let engine = try makeSparse(threads: 1)
        let x = [Float](repeating: 1, count: 40), w = [Float](repeating: 1, count: 100)
        let wrongPacked = try engine.packWeights(w, units: 5, inFeatures: 20)
        XCTAssertTrue(message { try engine.gatedLinear(input: x, batch: 4, inFeatures: 10, weights: w, bias: nil, units: 10,
                                                     mask: .all, packed: wrongPacked, output: &out) }.contains("packed weights"))
        let per = try GateMask.perSample(bits: [UInt8](repeating: 1, count: 8), batch: 4, granularity: 5, units: 10)
        XCTAssertTrue(message { try engine.gatedLinear(input: x, batch: 4, inFeatures: 10, weights: w, bias: nil, units: 10,
                                                     mask: per, layout: .compact, output: &out) }.contains("compact"))
        XCTAssertTrue(message { try engine.gatedLinear(input: x, batch: 2, inFeatures: 10, weights: w, bias: nil, units: 10,
                                                     mask: per, output: &out) }.contains("rows"))
        XCTAssertTrue(message { try engine.gatedLinear(input: x, batch: 4, inFeatures: 10, weights: w, bias: nil, units: 9,
                                                     mask: per, output: &out) }.contains("units"))
        XCTAssertTrue(message { try engine.gatedLinear(input: x, batch: 0, inFeatures: 10, weights: w, bias: nil, units: 10,
                                                     mask: per, output: &out) }.contains("batch"))
    }

    func testCostModelCalibratesAndCaches() throws {
        let kernels = try KernelSet.select(.auto)
        let dir = "/tmp/dgperf-sparse-test-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = SparseCostModelCache(path: dir + "/nested/model.json")
        let model = SparseCostModel.loadOrCalibrate(kernels: kernels, workers: 1, cache: cache)
        XCTAssertGreaterThan(model.gemmMAC, 0)
        XCTAssertGreaterThan(model.gemvMAC, 0)
        XCTAssertEqual(cache.load(fingerprint: model.fingerprint), model)
        // An unwritable cache never fails the run.
        let bad = SparseCostModelCache(path: "/proc/definitely/not/writable.json")
        bad.store(model)
        XCTAssertNil(bad.load(fingerprint: model.fingerprint))
        // Auto picks a sparse path for a very sparse, block-granular mask and dense for an all-on one.
        let engine = SparseEngine(gemm: try makeGemm(threads: 1), costModel: model, costModelCache: nil)
        let batch = 64, d = 256, h = 512, g = 64
        var rng = SplitMix64(seed: 5)
        let x = randomArray(batch * d, &rng), w = randomArray(h * d, &rng)
        var out = [Float](repeating: 0, count: batch * h)
        let sparse = try GateMask.perSample(bits: (0..<(batch * 8)).map { UInt8($0 % 8 == 0 ? 1 : 0) }, batch: batch, granularity: g, units: h)
        let r1 = try engine.gatedLinear(input: x, batch: batch, inFeatures: d, weights: w, bias: nil, units: h, mask: sparse, output: &out)
        XCTAssertNotEqual(r1.strategy, .denseThenMask, "\(r1.predictedSeconds)")
        let full = try GateMask.perSample(bits: [UInt8](repeating: 1, count: batch * 8), batch: batch, granularity: g, units: h)
        let r2 = try engine.gatedLinear(input: x, batch: batch, inFeatures: d, weights: w, bias: nil, units: h, mask: full, output: &out)
        XCTAssertEqual(r2.strategy, .denseThenMask, "\(r2.predictedSeconds)")
    }

    /// The calibration keeps each measurement's best over its passes, matched by position in the sequence: a slow
    /// spell in one pass does not reach the model (one such calibration read the GEMM at half speed).
    func testCalibrationKeepsEachMeasurementsBestOverPasses() {
        let minima = PassMinima()
        XCTAssertEqual([3.0, 5, 2].map(minima.keep), [3, 5, 2])
        minima.rewind()
        XCTAssertEqual([4.0, 1, 2].map(minima.keep), [3, 1, 2])
        minima.rewind()
        XCTAssertEqual([9.0, 9, 0.5].map(minima.keep), [3, 1, 0.5])
        XCTAssertEqual(minima.keep(7), 7, "a measurement the earlier passes did not make")
        XCTAssertGreaterThan(SparseCostModel.calibrationPasses, 1)
    }

    /// On several workers the engine's calibration also times each per-sample strategy there (measured over predicted
    /// at B = 32 and 256); the factor interpolates in log batch, is clamped, and is 1 where nothing was measured.
    func testCostModelMeasuresScalingOnSeveralWorkers() throws {
        let dir = "/tmp/dgperf-scaling-test-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = SparseCostModelCache(path: dir + "/model.json")
        let engine = SparseEngine(gemm: try makeGemm(threads: 2), costModel: nil, costModelCache: cache)
        let model = engine.costModel
        let scaling = try XCTUnwrap(model.scaling)
        for v in [scaling.unitMajor, scaling.unitMajorDots, scaling.sampleMajor] {
            XCTAssertEqual(v.count, 2)
            XCTAssertTrue(v.allSatisfy { $0.isFinite && $0 > 0 }, "\(v)")
        }
        XCTAssertEqual(cache.load(fingerprint: model.fingerprint)?.scaling, scaling)
        XCTAssertNil(SparseEngine(gemm: try makeGemm(threads: 1), costModel: nil, costModelCache: nil).costModel.scaling)

        // Relative to the best-scaling strategy at each batch: B = 32 → 1, 2, 4; B = 256 → 1, 4, 2.
        let s = PerSampleScaling(unitMajor: [1, 2], unitMajorDots: [2, 8], sampleMajor: [4, 4])
        XCTAssertEqual(s.factor(.unitMajor, batch: 32), 1, accuracy: 1e-12)
        XCTAssertEqual(s.factor(.unitMajorDots, batch: 32), 2, accuracy: 1e-12)
        XCTAssertEqual(s.factor(.sampleMajor, batch: 32), 4, accuracy: 1e-12)
        XCTAssertEqual(s.factor(.unitMajorDots, batch: 256), 4, accuracy: 1e-12)
        XCTAssertEqual(s.factor(.sampleMajor, batch: 256), 2, accuracy: 1e-12)
        XCTAssertEqual(s.factor(.unitMajorDots, batch: 90), 3, accuracy: 0.01)   // √(32 · 256) ≈ 90.5: halfway in log batch
        XCTAssertEqual(s.factor(.unitMajorDots, batch: 1), 2, accuracy: 1e-12)   // clamped to the measured range
        XCTAssertEqual(s.factor(.denseThenMask, batch: 64), 1)                    // never scaled
        XCTAssertEqual(s.factor(.sharedGather, batch: 64), 1)
        // A busy machine inflates all three alike: the same relative factors, capped at 8; unmeasured ones are 1.
        let busy = PerSampleScaling(unitMajor: [10, 20], unitMajorDots: [20, 80], sampleMajor: [40, 40])
        XCTAssertEqual(busy.factor(.sampleMajor, batch: 32), 4, accuracy: 1e-12)
        XCTAssertEqual(PerSampleScaling(unitMajor: [1, 1], unitMajorDots: [100, 100], sampleMajor: []).factor(.unitMajorDots, batch: 64), 8)
        XCTAssertEqual(PerSampleScaling(unitMajor: [1, 1], unitMajorDots: [2, 2], sampleMajor: []).factor(.sampleMajor, batch: 64), 1)

        // The factors scale the predictions `auto` compares.
        var plain = model, scaled = model
        plain.scaling = PerSampleScaling(unitMajor: [1, 1], unitMajorDots: [1, 1], sampleMajor: [1, 1])
        scaled.scaling = PerSampleScaling(unitMajor: [1, 1], unitMajorDots: [1, 1], sampleMajor: [2, 2])
        let batch = 48, d = 64, h = 300
        var rng = SplitMix64(seed: 8)
        let x = randomArray(batch * d, &rng), w = randomArray(h * d, &rng)
        var out = [Float](repeating: 0, count: batch * h)
        let mask = try GateMask.perSample(bits: (0..<(batch * h)).map { _ in UInt8(rng.next() % 10 == 0 ? 1 : 0) }, batch: batch, units: h)
        func predictions(_ m: SparseCostModel) throws -> PerSamplePredictions {
            let e = SparseEngine(gemm: try makeGemm(threads: 1), costModel: m, costModelCache: nil)
            return try XCTUnwrap(try e.gatedLinear(input: x, batch: batch, inFeatures: d, weights: w, bias: nil, units: h,
                                                   mask: mask, output: &out).predictions)
        }
        let p1 = try predictions(plain), p2 = try predictions(scaled)
        XCTAssertEqual(p2.denseThenMask, p1.denseThenMask, accuracy: 1e-12)
        XCTAssertEqual(p2.sampleMajor, 2 * p1.sampleMajor, accuracy: 1e-12)
        XCTAssertEqual(p2.unitMajor, p1.unitMajor, accuracy: 1e-12)
    }
}

/// y = h·Vᵀ + bias in float64 (h already masked) and the Σ|terms| scale for tolerances.
func layer2Reference(_ h: [Float], batch: Int, h hDim: Int, v: [Float], bias: [Float], c: Int) -> ([Double], [Double]) {
    let y = Reference.sgemm(transB: true, m: batch, n: c, k: hDim, a: h, lda: hDim, b: v, ldb: hDim)
    let s = Reference.sgemm(transB: true, m: batch, n: c, k: hDim, a: h.map(abs), lda: hDim, b: v.map(abs), ldb: hDim)
    return ((0..<(batch * c)).map { y[$0] + Double(bias[$0 % c]) }, (0..<(batch * c)).map { s[$0] + abs(Double(bias[$0 % c])) })
}

/// Closed form of unit-major's executed pairs: Σ over groups of (samples using any block of the group) × group width.
func groupedPairs(_ bits: [UInt8], batch: Int, blocks: Int, g: Int, h: Int, blocksPerGroup: Int) -> Int {
    var total = 0
    for j0 in stride(from: 0, to: blocks, by: blocksPerGroup) {
        let j1 = min(j0 + blocksPerGroup, blocks)
        let users = (0..<batch).filter { b in (j0..<j1).contains { bits[b * blocks + $0] != 0 } }.count
        total += users * (min(j1 * g, h) - j0 * g)
    }
    return total
}
