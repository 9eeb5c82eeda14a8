import XCTest
import Foundation
import DGRuntime
@testable import DGKernels

/// The obvious MoE forward in float64: route, apply capacity in the same priority order, run experts, combine.
struct MoEReferenceResult {
    var y: [Double]
    var scale: [Double]
    var requested: [Int]
    var load: [Int]
    var dropped: Int
    var droppedTokens: Int
    /// False when two logits are too close for float32 and float64 to agree on the ranking.
    var unambiguous: Bool
}

func moeReference(x: [Float], tokens: Int, w: MoEWeights, config: MoEConfig) -> MoEReferenceResult {
    let d = w.inFeatures, h = w.hidden, o = w.outFeatures, e = w.experts, k = config.topK
    var choice = [[Int]](), gates = [[Double]]()
    var unambiguous = true
    for t in 0..<tokens {
        var logits = [Double](repeating: 0, count: e)
        for ex in 0..<e {
            var s = Double(w.routerBias[ex])
            for i in 0..<d { s += Double(x[t * d + i]) * Double(w.router[ex * d + i]) }
            logits[ex] = s
        }
        let order = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        for i in 0..<min(k, e - 1) where logits[order[i]] - logits[order[i + 1]] < 1e-3 { unambiguous = false }
        let mx = logits.max()!
        let z = logits.reduce(0) { $0 + exp($1 - mx) }
        let c = Array(order.prefix(k))
        var g = c.map { exp(logits[$0] - mx) / z }
        if config.normalizeTopK && k > 1 { let s = g.reduce(0, +); g = g.map { $0 / s } }
        choice.append(c); gates.append(g)
    }
    let cap = Int((config.capacityFactor * Double(tokens * k) / Double(e)).rounded(.up))
    var load = [Int](repeating: 0, count: e), requested = [Int](repeating: 0, count: e)
    var kept = [[Bool]](repeating: [Bool](repeating: false, count: k), count: tokens)
    var dropped = 0
    for i in 0..<k { for t in 0..<tokens {
        let ex = choice[t][i]; requested[ex] += 1
        if load[ex] < cap { load[ex] += 1; kept[t][i] = true } else { dropped += 1 }
    } }
    var y = [Double](repeating: 0, count: tokens * o), scale = [Double](repeating: 0, count: tokens * o)
    var droppedTokens = 0
    for t in 0..<tokens {
        if !kept[t].contains(true) {
            droppedTokens += 1
            for j in 0..<o { y[t * o + j] = o == d ? Double(x[t * d + j]) : 0 }
            continue
        }
        for i in 0..<k where kept[t][i] {
            let ex = choice[t][i]
            var hv = [Double](repeating: 0, count: h), hs = [Double](repeating: 0, count: h)
            for u in 0..<h {
                var s = Double(w.b1[ex * h + u]), a = abs(s)
                for p in 0..<d {
                    let term = Double(x[t * d + p]) * Double(w.w1[(ex * h + u) * d + p]); s += term; a += abs(term)
                }
                hv[u] = max(0, s); hs[u] = a
            }
            for j in 0..<o {
                var s = Double(w.b2[ex * o + j]), a = abs(s)
                for u in 0..<h { let wv = Double(w.w2[(ex * o + j) * h + u]); s += wv * hv[u]; a += abs(wv) * hs[u] }
                y[t * o + j] += gates[t][i] * s; scale[t * o + j] += a
            }
        }
    }
    return MoEReferenceResult(y: y, scale: scale, requested: requested, load: load, dropped: dropped,
                              droppedTokens: droppedTokens, unambiguous: unambiguous)
}

final class MoETests: XCTestCase {
    func testRandomizedAgainstReferenceLoop() throws {
        let engines = [MoEEngine(gemm: try makeGemm(threads: 1)), MoEEngine(gemm: try makeGemm(threads: 2))]
        let tokenCounts = [1, 2, 3, 17, 64, 256]
        let factors = [0.25, 0.5, 1.0, 1.25, 2.0]
        var rng = SplitMix64(seed: 77)
        var checked = 0, sawOverflow = false, sawEmptyExpert = false, sawDroppedToken = false, sawZeroFill = false
        var caseIndex = 0
        while checked < 520 {
            caseIndex += 1
            let engine = engines[caseIndex % 2]
            let tokens = tokenCounts[caseIndex % tokenCounts.count]
            let d = 1 + Int(rng.next() % 20), h = 1 + Int(rng.next() % 24)
            let o = rng.next() % 3 == 0 ? 1 + Int(rng.next() % 12) : d
            let e = 1 + Int(rng.next() % 8)
            let k = 1 + Int(rng.next() % UInt64(min(e, 3)))
            let config = MoEConfig(experts: e, topK: k, capacityFactor: factors[caseIndex % factors.count],
                                   normalizeTopK: caseIndex % 4 != 0)
            var w = try MoEWeights.random(inFeatures: d, hidden: h, outFeatures: o, experts: e, seed: rng.next())
            // Skew the router: a favourite expert (overflow) and some starved ones (empty experts).
            if caseIndex % 3 == 0 {
                w.routerBias[0] += 4
                if e > 2 { w.routerBias[e - 1] -= 50 }
            }
            let x = randomArray(tokens * d, &rng)
            let ref = moeReference(x: x, tokens: tokens, w: w, config: config)
            guard ref.unambiguous else { continue }
            var y = [Float](repeating: .nan, count: tokens * o)
            let packed = caseIndex % 3 == 1 ? engine.pack(w) : nil
            let r = try engine.forward(input: x, tokens: tokens, weights: w, config: config, packed: packed, output: &y)
            let tag = "case \(caseIndex) T=\(tokens) D=\(d) H=\(h) O=\(o) E=\(e) k=\(k) c=\(config.capacityFactor) packed=\(packed != nil)"
            XCTAssertEqual(r.requested, ref.requested, tag)
            XCTAssertEqual(r.load, ref.load, tag)
            XCTAssertEqual(r.droppedAssignments, ref.dropped, tag)
            XCTAssertEqual(r.droppedTokens, ref.droppedTokens, tag)
            XCTAssertEqual(r.capacity, Int((config.capacityFactor * Double(tokens * k) / Double(e)).rounded(.up)), tag)
            let kept = r.load.reduce(0, +)
            XCTAssertEqual(kept + r.droppedAssignments, tokens * k, tag)
            XCTAssertEqual(r.cost.useful.macs, kept * (d * h + h * o), tag)
            XCTAssertEqual(r.cost.overhead.macs, tokens * e * d, tag)  // the router
            XCTAssertEqual(r.cost.wasted.macs, 0, tag)
            if engine.gemm.workerCount == 1 { XCTAssertEqual(r.schedule, .serial, tag) }
            XCTAssertEqual(r.nominalMACs, tokens * k * (d * h + h * o), tag)
            if let m = firstMismatch(y, ref.y, ref.scale, tol: 1e-4) { XCTFail("\(tag): \(m)"); return }
            checked += 1
            sawOverflow = sawOverflow || r.droppedAssignments > 0
            sawEmptyExpert = sawEmptyExpert || r.load.contains(0)
            sawDroppedToken = sawDroppedToken || r.droppedTokens > 0
            sawZeroFill = sawZeroFill || (r.droppedTokens > 0 && o != d)
        }
        XCTAssertTrue(sawOverflow && sawEmptyExpert && sawDroppedToken && sawZeroFill,
                      "coverage: overflow \(sawOverflow) empty \(sawEmptyExpert) dropped \(sawDroppedToken) zero-fill \(sawZeroFill)")
    }

    /// Experts wider than a panel, on 3, 5 and 16 workers: with 2 ≤ busy experts < workers each layer is cut into
    /// work items of panel runs, so parts of one expert run on different workers and write disjoint columns of its
    /// rows; with more, whole experts run on the workers' own engines; one busy expert splits its own GEMMs.
    func testExpertItemsOnManyWorkersAgainstReferenceLoop() throws {
        let engines = try [3, 5, 16].map { MoEEngine(gemm: try makeGemm(threads: $0)) }
        let nr = engines[0].gemm.kernels.nr
        var rng = SplitMix64(seed: 91)
        var checked = 0, sawSplitExpert = false
        var caseIndex = 0
        while checked < 90 {
            caseIndex += 1
            let engine = engines[caseIndex % engines.count]
            let tokens = [1, 2, 7, 17, 64][caseIndex % 5]
            let d = 1 + Int(rng.next() % 40), h = 1 + Int(rng.next() % UInt64(5 * nr)), o = 1 + Int(rng.next() % UInt64(3 * nr))
            let e = 1 + Int(rng.next() % 8), k = 1 + Int(rng.next() % UInt64(min(e, 2)))
            let config = MoEConfig(experts: e, topK: k, capacityFactor: [0.5, 1.25, 2][caseIndex % 3])
            let w = try MoEWeights.random(inFeatures: d, hidden: h, outFeatures: o, experts: e, seed: rng.next())
            let x = randomArray(tokens * d, &rng)
            let ref = moeReference(x: x, tokens: tokens, w: w, config: config)
            guard ref.unambiguous else { continue }
            var y = [Float](repeating: .nan, count: tokens * o)
            let packed = caseIndex % 2 == 0 ? engine.pack(w) : nil
            engine.fewExpertsSchedule = caseIndex % 7 == 3 ? .inTurn : .sharedRegion
            let r = try engine.forward(input: x, tokens: tokens, weights: w, config: config, packed: packed, output: &y)
            let tag = "case \(caseIndex) workers=\(engine.gemm.workerCount) T=\(tokens) D=\(d) H=\(h) O=\(o) E=\(e) k=\(k) packed=\(packed != nil) \(engine.fewExpertsSchedule)"
            XCTAssertEqual(r.load, ref.load, tag)
            let busyExperts = r.load.filter { $0 > 0 }.count
            let expected: ExpertSchedule = busyExperts >= engine.gemm.workerCount ? .perWorker
                : busyExperts == 1 ? .inTurn : engine.fewExpertsSchedule == .inTurn ? .inTurn : .sharedRegion
            XCTAssertEqual(r.schedule, expected, tag)
            if let m = firstMismatch(y, ref.y, ref.scale, tol: 1e-4) { XCTFail("\(tag): \(m)"); return }
            sawSplitExpert = sawSplitExpert || (r.schedule == .sharedRegion
                && MoEEngine.items(load: r.load, width: h, nr: nr, k: d, workers: engine.gemm.workerCount, minMACs: 0).count > busyExperts)
            checked += 1
        }
        XCTAssertTrue(sawSplitExpert, "no case split an expert into several pieces")
    }

    /// The work-item plan: every busy expert's panels exactly once, in order; items of about equal multiply-adds;
    /// the count bounded by workers, panels and the minimum work, a multiple of the workers when it reaches them.
    func testItemPlanCoversEveryBusyExpertOnce() {
        var rng = SplitMix64(seed: 5)
        for _ in 0..<400 {
            let e = 1 + Int(rng.next() % 16), nr = [16, 32][Int(rng.next() % 2)], width = 1 + Int(rng.next() % 700)
            let k = 1 + Int(rng.next() % 800), workers = 1 + Int(rng.next() % 24)
            let minMACs = [0, 1 << 12, 1 << 17][Int(rng.next() % 3)]
            let load = (0..<e).map { _ in rng.next() % 4 == 0 ? 0 : Int(rng.next() % 100) }
            let plan = MoEEngine.items(load: load, width: width, nr: nr, k: k, workers: workers, minMACs: minMACs)
            let tag = "load \(load) width \(width) nr \(nr) k \(k) workers \(workers) min \(minMACs)"
            let panels = (width + nr - 1) / nr
            // Flattened in item order: expert after expert, each expert's panels 0..<panels in runs.
            var expected: [(Int, Int)] = []
            for ex in 0..<e where load[ex] > 0 { for p in 0..<panels { expected.append((ex, p)) } }
            let flat = plan.segments.flatMap { s in s.panels.map { (s.expert, $0) } }
            XCTAssertEqual(flat.map(\.0), expected.map(\.0), tag)
            XCTAssertEqual(flat.map(\.1), expected.map(\.1), tag)
            XCTAssertFalse(plan.segments.contains { $0.panels.isEmpty }, tag)
            XCTAssertEqual(plan.starts.first, 0, tag)
            XCTAssertEqual(plan.starts.last, plan.segments.count, tag)
            guard !expected.isEmpty else { XCTAssertEqual(plan.count, 0, tag); continue }
            // Count: ≤ 4 per worker, ≤ one per panel, ≤ one per minMACs; a multiple of the workers once that many.
            let total = load.reduce(0, +) * width * k
            var bound = min(4 * workers, expected.count, minMACs > 0 ? max(1, total / minMACs) : expected.count)
            if bound >= workers { bound -= bound % workers }
            XCTAssertLessThanOrEqual(plan.count, bound, tag)
            XCTAssertGreaterThanOrEqual(plan.count, 1, tag)
            // Balance: no item holds more than its share plus one panel's work (the largest panel of the busiest expert).
            let largestPanel = load.max()! * min(nr, width) * k
            for i in 0..<plan.count {
                let work = plan.item(i).reduce(0) { acc, s in
                    acc + s.panels.reduce(0) { $0 + load[s.expert] * min(nr, width - $1 * nr) * k }
                }
                XCTAssertLessThanOrEqual(work, total / bound + largestPanel, "\(tag) item \(i)")
            }
            // No panel larger than a share: every share holds a panel's midpoint, so no item number is skipped.
            if largestPanel * bound <= total { XCTAssertEqual(plan.count, bound, tag) }
        }
        // One batch-1 expert (784 → 512) on 2 workers with the default 2^17 MAC floor: 401 408 MACs allow 3 items,
        // cut to 2 (a multiple of the workers) — the two halves of its 16 panels.
        XCTAssertEqual(MoEEngine.items(load: [0, 1], width: 512, nr: 32, k: 784, workers: 2, minMACs: 1 << 17),
                       MoEEngine.ItemPlan(segments: [.init(expert: 1, panels: 0..<8), .init(expert: 1, panels: 8..<16)],
                                          starts: [0, 1, 2]))
        // Eight busy experts of 16 panels on 16 workers: 64 items; equal loads give two panels of one expert each.
        let even = MoEEngine.items(load: [8, 8, 8, 8, 8, 8, 8, 8], width: 512, nr: 32, k: 784, workers: 16, minMACs: 1 << 17)
        XCTAssertEqual(even.count, 64)
        XCTAssertEqual(even.item(5), [.init(expert: 0, panels: 10..<12)])
        // Three experts of four panels in 8 items of 1.5 panels: item 5 ends expert 1 and starts expert 2.
        let spanning = MoEEngine.items(load: [6, 6, 6], width: 128, nr: 32, k: 50, workers: 2, minMACs: 0)
        XCTAssertEqual(spanning.count, 8)
        XCTAssertEqual(spanning.item(5), [.init(expert: 1, panels: 3..<4), .init(expert: 2, panels: 0..<1)])
    }

    /// One layer-sized case on 2 threads: D = 784, top-2 of 8, every expert busy.
    func testLargeTop2Of8() throws {
        let engine = MoEEngine(gemm: try makeGemm(threads: 2))
        var rng = SplitMix64(seed: 3)
        let tokens = 64, d = 784, h = 64
        let w = try MoEWeights.random(inFeatures: d, hidden: h, outFeatures: d, experts: 8, seed: 11)
        let x = randomArray(tokens * d, &rng)
        let config = MoEConfig(experts: 8, topK: 2, capacityFactor: 1.25)
        let ref = moeReference(x: x, tokens: tokens, w: w, config: config)
        var y = [Float](repeating: .nan, count: tokens * d)
        let r = try engine.forward(input: x, tokens: tokens, weights: w, config: config, output: &y)
        if ref.unambiguous {
            XCTAssertEqual(r.load, ref.load)
            if let m = firstMismatch(y, ref.y, ref.scale, tol: 1e-4) { XCTFail(m) }
        }
        XCTAssertEqual(r.capacity, 20)
    }

    func testValidationErrors() throws {
        func message(_ body: () throws -> Any) -> String {
            do { _ = try body(); return "" } catch { return "\(error)" }
        }
        XCTAssertTrue(message { try MoEConfig(experts: 8, topK: 2, capacityFactor: 0).validate() }.contains("capacity factor"))
        XCTAssertTrue(message { try MoEConfig(experts: 8, topK: 2, capacityFactor: -1).validate() }.contains("> 0"))
        XCTAssertTrue(message { try MoEConfig(experts: 8, topK: 2, capacityFactor: .nan).validate() }.contains("capacity factor"))
        XCTAssertTrue(message { try MoEConfig(experts: 2, topK: 3, capacityFactor: 1).validate() }.contains("top-k"))
        XCTAssertTrue(message { try MoEConfig(experts: 2, topK: 0, capacityFactor: 1).validate() }.contains("top-k"))
        XCTAssertTrue(message { try MoEWeights(inFeatures: 2, hidden: 2, outFeatures: 2, experts: 2, router: [1], routerBias: [0, 0],
                                                w1: [], b1: [], w2: [], b2: []) }.contains("router"))
        let engine = MoEEngine(gemm: try makeGemm(threads: 1))
        let w = try MoEWeights.random(inFeatures: 4, hidden: 4, outFeatures: 4, experts: 4, seed: 1)
        var y = [Float](repeating: 0, count: 16)
        XCTAssertTrue(message { try engine.forward(input: [Float](repeating: 1, count: 16), tokens: 4, weights: w,
                                                   config: MoEConfig(experts: 4, topK: 5, capacityFactor: 1), output: &y) }.contains("top-k"))
        XCTAssertTrue(message { try engine.forward(input: [Float](repeating: 1, count: 16), tokens: 4, weights: w,
                                                   config: MoEConfig(experts: 3, topK: 1, capacityFactor: 1), output: &y) }.contains("experts"))
    }
}
