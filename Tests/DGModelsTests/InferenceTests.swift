import DGKernels
import DGRuntime
import XCTest
@testable import DGModels

/// Inference models (masked GEMMs) against the float64 reference, over shapes, masks and thread counts.
final class InferenceTests: XCTestCase {
    func forward(_ model: InferenceModel, _ x: [Float], batch: Int) throws -> ([Float], ForwardReport) {
        var out = [Float](repeating: .nan, count: batch * model.spec.classes)
        let r = try x.withUnsafeBufferPointer { xp in
            try out.withUnsafeMutableBufferPointer { try model.forward(input: xp.baseAddress!, batch: batch, output: $0.baseAddress!) }
        }
        return (out, r)
    }

    func assertClose(_ a: [Float], _ b: [Double], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        let scale = max(1, b.map(abs).max() ?? 1)
        let err = zip(a, b).map { abs(Double($0) - $1) }.max() ?? 0
        XCTAssertLessThan(err / scale, 1e-4, "\(what): max error \(err)", file: file, line: line)
    }

    /// A per-sample mask's active-unit total (summed sixteen flags at a time, flushed every 255 vectors) against a
    /// plain count: short rows (the tail only), more than 255 × 16 flags, a partial last gate.
    func testPerSampleMaskActiveUnitsTotal() {
        var rng = SplitMix64(seed: 5)
        for (batch, gates, granularity, units) in [(1, 3, 1, 3), (7, 5, 4, 19), (256, 2048, 1, 2048), (33, 200, 16, 3190), (5000, 3, 2, 5)] {
            let bits = (0..<(batch * gates)).map { _ in UInt8(rng.next() % 3 == 0 ? 1 : 0) }
            let mask = PerSampleMask(bits: bits, batch: batch, gates: gates, granularity: granularity, units: units)
            var plain = 0
            for b in 0..<batch { for g in 0..<gates where bits[b * gates + g] != 0 { plain += min(granularity, units - g * granularity) } }
            XCTAssertEqual(mask.activeUnitsTotal, plain, "batch \(batch) gates \(gates) G \(granularity) units \(units)")
        }
        // All on: every byte lane reaches its flush limit.
        let full = PerSampleMask(bits: [UInt8](repeating: 1, count: 300 * 64), batch: 300, gates: 64, granularity: 1, units: 64)
        XCTAssertEqual(full.activeUnitsTotal, 300 * 64)
    }

    func testTrainedGateModelsMatchReference() throws {
        for (gate, g, hidden, batch, threads, bias) in [
            ("lowrank:3", 1, [37], 7, 1, Float(0)), ("full", 1, [16, 11], 33, 2, 0), ("static", 1, [13, 9], 5, 1, 0),
            ("block:16", 16, [64], 29, 2, 0), ("block:16", 16, [50, 32], 13, 1, 0), ("block:5", 5, [23], 1, 1, 0),
            ("lowrank:4", 1, [19], 4, 1, -50), ("lowrank:4", 1, [19], 4, 2, 50),
        ] as [(String, Int, [Int], Int, Int, Float)] {
            let spec = ModelSpec(kind: .dg, inputFeatures: 17, hidden: hidden, classes: 5, granularity: g, gate: gate, threshold: 0.5)
            let net = try Network(spec: spec, seed: 21)
            var rng = SplitMix64(seed: 8)
            for p in net.params where p.name.hasPrefix("gate.") {
                for i in 0..<p.count { p.value[i] = bias != 0 && p.name.hasSuffix("bias") ? bias : (rng.nextFloat() - 0.5) * 3 }
            }
            if gate == "static" { for i in 0..<hidden[0] { net.param("gate.0.logits").value[i] = i % 3 == 0 ? 2 : -2 } }
            let model = try ModelFactory.build(net, engine: makeEngine(threads: threads))
            let x = randomInputs(batch * 17, seed: UInt64(batch))
            let (out, report) = try forward(model, x, batch: batch)
            let ref = ReferenceModel(net).mlpLogits(x.map(Double.init), rows: batch).0
            assertClose(out, ref, "\(gate) hidden \(hidden) batch \(batch) threads \(threads) bias \(bias)")
            XCTAssertGreaterThan(report.cost.overhead.macs + (gate == "static" ? 1 : 0), 0)
            if bias < 0 { XCTAssertEqual(report.activeFraction, 0, "all gates off") }
            if bias > 0 { XCTAssertEqual(report.activeFraction, 1, "all gates on") }
        }
    }

    func testMinKeepTurnsOnOneUnit() throws {
        let spec = ModelSpec(kind: .dg, inputFeatures: 6, hidden: [10], classes: 3, gate: "full", minKeep: 1)
        let net = try Network(spec: spec, seed: 2)
        for i in 0..<10 { net.param("gate.0.bias").value[i] = -40 }
        let model = try ModelFactory.build(net, engine: makeEngine()) as! MaskedMLP
        model.recordMasks = true
        let x = randomInputs(4 * 6, seed: 3)
        let (out, report) = try forward(model, x, batch: 4)
        XCTAssertEqual(report.activeFraction, 0.1, accuracy: 1e-12)
        let m = model.lastGateBits
        let ref = ReferenceModel(net).mlpLogits(x.map(Double.init), rows: 4, hardMask: m).0
        assertClose(out, ref, "min_keep")
    }

    /// Evaluation's gate statistics on fixed gates: units 0–2 on for every sample, 3–5 only for the first, the rest
    /// never (the first sample's pixel 0 is white, the others' black).
    func testEvaluationCountsSkewedGates() throws {
        let spec = ModelSpec(kind: .dg, inputFeatures: 4, hidden: [16], classes: 3, gate: "full")
        let net = try Network(spec: spec, seed: 1)
        for i in 0..<(16 * 4) { net.param("gate.0.weight").value[i] = 0 }
        for u in 0..<16 { net.param("gate.0.bias").value[u] = u < 3 ? 40 : -40 }
        for u in 3..<6 { net.param("gate.0.weight").value[u * 4] = 200; net.param("gate.0.bias").value[u] = -100 }
        let model = try ModelFactory.build(net, engine: makeEngine())
        let n = 8
        var images = [UInt8](repeating: 100, count: n * 4)
        for s in 0..<n { images[s * 4] = s == 0 ? 255 : 0 }
        let data = Dataset(images: images, labels: [UInt8](repeating: 0, count: n), count: n, features: 4, classes: 3)
        let layer = try Evaluation.run(model, data: data, batch: 4).layers[0]
        XCTAssertEqual(layer.alwaysActive, 3)
        XCTAssertEqual(layer.neverActive, 10)
        XCTAssertEqual(layer.halfActive, 3)
        XCTAssertEqual(layer.halfActivePairShare, 24.0 / 27.0, accuracy: 1e-12)
    }

    /// `dgperf kernel --masks learned`: the first layer's gate bits on the first B images (wrapping round a small
    /// set), the same as a forward of those images records; models without input-dependent gates are refused.
    func testLearnedMasksAreTheModelsGateBits() throws {
        let spec = ModelSpec(kind: .dg, inputFeatures: 4, hidden: [20], classes: 3, granularity: 4, gate: "full")
        let net = try Network(spec: spec, seed: 3)
        for i in 0..<(5 * 4) { net.param("gate.0.weight").value[i] = Float(i % 7) - 3 }
        for g in 0..<5 { net.param("gate.0.bias").value[g] = 0 }
        let n = 3
        let images: [UInt8] = (0..<(n * 4)).map { UInt8(($0 * 37) % 256) }
        let data = Dataset(images: images, labels: [UInt8](repeating: 0, count: n), count: n, features: 4, classes: 3)
        let learned = try LearnedMasks.firstLayer(net, data: data, batch: 7, engine: makeEngine())
        XCTAssertEqual(learned.granularity, 4)
        XCTAssertEqual(learned.units, 20)
        XCTAssertEqual(learned.bits.count, 7 * 5)
        // The same images through the model directly (sample i is image i mod 3).
        let model = try ModelFactory.build(net, engine: makeEngine()) as! MaskedMLP
        model.recordMasks = true
        let x = (0..<7).flatMap { i in (0..<4).map { Float(images[(i % n) * 4 + $0]) / 255 } }
        _ = try forward(model, x, batch: 7)
        XCTAssertEqual(learned.bits, model.lastGateBits[0])
        XCTAssertTrue(learned.bits.contains(1) && learned.bits.contains(0), "a mix of on and off gates")
        // No input-dependent gates: a clear refusal.
        for other in [ModelSpec(kind: .dense, inputFeatures: 4, hidden: [20], classes: 3),
                      ModelSpec(kind: .dg, inputFeatures: 4, hidden: [20], classes: 3, gate: "static")] {
            XCTAssertThrowsError(try LearnedMasks.firstLayer(try Network(spec: other, seed: 1), data: data, batch: 2,
                                                             engine: makeEngine())) { XCTAssertTrue("\($0)".contains("DynamicGate")) }
        }
    }

    /// Synthetic dg and random control: the requested fraction exactly, outputs match the reference with the same masks.
    func testSyntheticMasksHitTheFractionAndMatchReference() throws {
        for kind in [ModelKind.dg, .random] {
            for (maskKind, g, batch, threads) in [(MaskKind.perSample, 1, 9, 1), (.shared, 1, 9, 2), (.perSample, 16, 40, 2),
                                                  (.shared, 8, 3, 1), (.perSample, 1, 1, 1)] {
                let spec = ModelSpec(kind: kind, inputFeatures: 31, hidden: [64, 48], classes: 7, activeFraction: 0.25,
                                     granularity: g, maskKind: maskKind, gate: "lowrank:8")
                let model = try ModelFactory.synthetic(spec, engine: makeEngine(threads: threads), seed: 5) as! MaskedMLP
                model.recordMasks = true
                let x = randomInputs(batch * 31, seed: 4)
                let (out, report) = try forward(model, x, batch: batch)
                // Whole gates: round(r · gates) of each layer's gates.
                let expected = spec.hidden.map { h -> Double in
                    let gates = (h + g - 1) / g, on = Int((0.25 * Double(gates)).rounded())
                    return Double(min(on * g, h)) / Double(h)
                }.reduce(0, +) / 2
                XCTAssertEqual(report.activeFraction, expected, accuracy: 1e-9, "\(kind) \(maskKind) G=\(g)")
                let masks = model.lastGateBits
                var ref = ReferenceModel(model.network)
                let refOut: [Double]
                if kind == .random {
                    let scales = (0..<2).map { l -> [Double] in
                        let H = spec.hidden[l], G = (H + g - 1) / g
                        return (0..<(batch * H)).map { Double(masks[l][($0 / H) * G + ($0 % H) / g]) / 0.25 }
                    }
                    refOut = ref.mlpLogits(x.map(Double.init), rows: batch, unitScale: scales).0
                } else {
                    ref.spec.kind = .dg
                    refOut = ref.mlpLogits(x.map(Double.init), rows: batch, hardMask: masks).0
                    let g0 = (64 + g - 1) / g, g1 = (48 + g - 1) / g
                    XCTAssertEqual(report.cost.overhead.macs, batch * (31 * 8 + 8 * g0 + 64 * 8 + 8 * g1), "gate predictor MACs counted")
                }
                assertClose(out, refOut, "\(kind) \(maskKind) G=\(g) batch \(batch)")
                if maskKind == .perSample && batch > 1 {
                    // The second gated layer (per-sample on both sides) runs the sparse engine's per-sample strategies.
                    XCTAssertEqual(report.notes["strategy.1"]?.hasPrefix("k-dense-"), true, "\(report.notes)")
                }
                let useful = Double(report.cost.useful.macs) / Double(model.denseCost(batch: batch).macs)
                XCTAssertLessThan(useful, 0.5, "only active units are useful")
                XCTAssertEqual(report.cost.useful.macs + report.cost.wasted.macs <= model.denseCost(batch: batch).macs, true)
            }
        }
    }

    func testDenseAndMoEMatchReference() throws {
        for (batch, threads) in [(1, 1), (7, 2), (64, 2)] {
            let dense = try Network(spec: ModelSpec(kind: .dense, inputFeatures: 23, hidden: [19, 7], classes: 5), seed: 1)
            let x = randomInputs(batch * 23, seed: 6)
            let (out, r) = try forward(ModelFactory.build(dense, engine: makeEngine(threads: threads)), x, batch: batch)
            assertClose(out, ReferenceModel(dense).mlpLogits(x.map(Double.init), rows: batch).0, "dense batch \(batch)")
            XCTAssertEqual(r.cost.useful.macs, batch * (23 * 19 + 19 * 7 + 7 * 5))
            for topK in [1, 2] {
                let spec = ModelSpec(kind: .moe, inputFeatures: 23, hidden: [24], classes: 5, experts: 4, topK: topK, capacityFactor: 1)
                let net = try Network(spec: spec, seed: 3)
                var rng = SplitMix64(seed: 2)
                for i in 0..<net.param("router.weight").count { net.param("router.weight").value[i] = rng.nextGaussian() }
                let model = try ModelFactory.build(net, engine: makeEngine(threads: threads))
                let (mo, mr) = try forward(model, x, batch: batch)
                let ref = ReferenceModel(net).moe(x.map(Double.init), rows: batch, lbWeight: 0, zWeight: 0)
                assertClose(mo, ref.logits, "moe top-\(topK) batch \(batch)")
                XCTAssertEqual(Int(mr.notes["dropped"]!), ref.dropped)
                XCTAssertEqual(mr.cost.overhead.macs, batch * 23 * 4, "router MACs are overhead")
                XCTAssertEqual(mr.cost.useful.macs, (batch * topK - ref.dropped) * (23 * 6 + 6 * 5))
            }
        }
    }

    func testSyntheticFactoryBuildsEveryKindAndRejectsBadSpecs() throws {
        for kind in ModelKind.allCases {
            let model = try ModelFactory.synthetic(ModelSpec(kind: kind, inputFeatures: 20, hidden: [32], classes: 4, activeFraction: 0.5),
                                                   engine: makeEngine())
            let (out, r) = try forward(model, randomInputs(8 * 20, seed: 1), batch: 8)
            XCTAssertTrue(out.allSatisfy { $0.isFinite }, "\(kind)")
            XCTAssertEqual(model.denseCost(batch: 8).macs, 8 * (20 * 32 + 32 * 4))
            XCTAssertGreaterThan(r.cost.useful.macs, 0)
            XCTAssertThrowsError(try forward(model, [], batch: 0))
        }
        XCTAssertThrowsError(try ModelFactory.synthetic(ModelSpec(kind: .dg, gate: "lowrank:x"), engine: makeEngine()))
        XCTAssertThrowsError(try ModelFactory.synthetic(ModelSpec(kind: .moe, hidden: [8, 8]), engine: makeEngine()))
        XCTAssertThrowsError(try ModelFactory.synthetic(ModelSpec(kind: .random, activeFraction: 0), engine: makeEngine()))
    }
}

/// `ModelSpec.parameterCount` (used to refuse models that cannot fit in memory) counts what `Network` allocates.
final class ModelSizeTests: XCTestCase {
    func testParameterCountMatchesNetwork() throws {
        var rng = SplitMix64(seed: 12)
        let gates = ["static", "full", "lowrank:7", "block:4"]
        for i in 0..<60 {
            let kind = ModelKind.allCases[i % ModelKind.allCases.count]
            let layers = kind == .moe ? 1 : 1 + Int(rng.next() % 3)
            let hidden = (0..<layers).map { _ in 1 + Int(rng.next() % 70) }
            let spec = ModelSpec(kind: kind, inputFeatures: 1 + Int(rng.next() % 50), hidden: hidden,
                                 classes: 1 + Int(rng.next() % 12), granularity: 1 + Int(rng.next() % 5),
                                 gate: gates[i % gates.count], experts: 1 + Int(rng.next() % 6), topK: 1)
            let network = try Network(spec: spec, seed: 1)
            XCTAssertEqual(spec.parameterCount, network.parameterCount, "\(spec)")
        }
        // Shapes far beyond memory give a huge estimate, not an overflow trap.
        let huge = ModelSpec(kind: .dense, inputFeatures: 1 << 20, hidden: Array(repeating: 65_536, count: 64))
        XCTAssertGreaterThan(huge.estimatedMemoryBytes(batch: 65_536), 1 << 42)
    }
}
