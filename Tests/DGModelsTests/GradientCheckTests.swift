import DGKernels
import DGRuntime
import XCTest
@testable import DGModels

/// Analytic gradients (Float, on the GEMM engine) against central finite differences of the float64 reference.
final class GradientCheckTests: XCTestCase {
    let rows = 6

    /// Compares every tensor's gradient with finite differences of `loss` (a function of the perturbed reference).
    func check(_ net: Network, _ ref: ReferenceModel, tolerance: Double = 2e-3,
               file: StaticString = #filePath, line: UInt = #line,
               loss: (ReferenceModel) -> Double) {
        let eps = 1e-5
        for p in net.params {
            var worst = 0.0
            var num = [Double](repeating: 0, count: p.count)
            for i in 0..<p.count {
                var plus = ref, minus = ref
                plus.params[p.name]![i] += eps
                minus.params[p.name]![i] -= eps
                num[i] = (loss(plus) - loss(minus)) / (2 * eps)
            }
            let ana = p.grads.map(Double.init)
            let diff = zip(ana, num).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
            let norm = max(num.reduce(0) { $0 + $1 * $1 }.squareRoot(), ana.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-4)
            worst = diff / norm
            XCTAssertLessThan(worst, tolerance, "gradient of \(p.name): relative error \(worst)", file: file, line: line)
        }
    }

    func run(_ spec: ModelSpec, lambda: Double = 0, config: TrainingConfig = TrainingConfig(), threads: Int = 1,
             prepare: (Network) -> Void = { _ in }) throws -> (Network, Trainer, [Float], [Int32]) {
        let net = try Network(spec: spec, seed: 7)
        // Nonzero biases: a zero input row with zero bias would sit exactly on a ReLU kink.
        var rng = SplitMix64(seed: 77)
        for p in net.params where p.name.hasPrefix("hidden.") && p.name.hasSuffix("bias") {
            for i in 0..<p.count { p.value[i] = rng.nextFloat() * 0.2 + 0.05 }
        }
        prepare(net)
        let trainer = try Trainer(network: net, engine: makeEngine(threads: threads), config: config)
        let x = randomInputs(rows * spec.inputFeatures, seed: 11), y = randomLabels(rows, classes: spec.classes, seed: 12)
        try x.withUnsafeBufferPointer { xp in
            try y.withUnsafeBufferPointer { yp in
                _ = try trainer.computeGradients(x: xp.baseAddress!, labels: yp.baseAddress!, batch: rows, lambda: lambda)
            }
        }
        return (net, trainer, x, y)
    }

    func testDenseTwoHiddenLayers() throws {
        let spec = ModelSpec(kind: .dense, inputFeatures: 7, hidden: [11, 5], classes: 4)
        let (net, _, x, y) = try run(spec)
        let xd = x.map(Double.init)
        check(net, ReferenceModel(net)) { r in
            ReferenceModel.crossEntropy(r.mlpLogits(xd, rows: self.rows).0, labels: y, classes: 4)
        }
    }

    func testDropoutUsesItsMasks() throws {
        let spec = ModelSpec(kind: .dropout, inputFeatures: 6, hidden: [9, 8], classes: 3, dropoutRate: 0.4)
        let (net, trainer, x, y) = try run(spec)
        let masks = (0..<2).map { l in trainer.cached("drop.\(l)", count: rows * spec.hidden[l]).map(Double.init) }
        XCTAssertTrue(masks[0].contains(0) && masks[0].contains { $0 > 1 }, "dropout mask should drop and rescale")
        let xd = x.map(Double.init)
        check(net, ReferenceModel(net)) { r in
            ReferenceModel.crossEntropy(r.mlpLogits(xd, rows: self.rows, unitScale: masks).0, labels: y, classes: 3)
        }
    }

    /// STE: the surrogate h = a ⊙ (m0 + p − p0) has exactly the straight-through gradient; budget λ·mean(p).
    func steCheck(gate: String, granularity: Int = 1, hidden: [Int] = [10, 6], minKeep: Int = 0, threads: Int = 1) throws {
        let spec = ModelSpec(kind: .dg, inputFeatures: 5, hidden: hidden, classes: 3, granularity: granularity, gate: gate,
                             temperature: 0.7, threshold: 0.5, minKeep: minKeep)
        let lambda = 0.3
        // Spread gate biases around 0 so masks are mixed (some units on, some off).
        let (net, trainer, x, y) = try run(spec, lambda: lambda, threads: threads) { net in
            var rng = SplitMix64(seed: 99)
            for p in net.params where p.name.hasPrefix("gate.") {
                for i in 0..<p.count { p.value[i] = (rng.nextFloat() - 0.5) * (p.name.hasSuffix("up") || p.name.hasSuffix("weight") ? 2 : 3) }
            }
        }
        let G = hidden.map { ($0 + net.granularity - 1) / net.granularity }
        let m0 = (0..<hidden.count).map { trainer.cached("gm.\($0)", count: rows * G[$0]).map(Double.init) }
        let p0 = (0..<hidden.count).map { trainer.cached("gp.\($0)", count: rows * G[$0]).map(Double.init) }
        XCTAssertTrue(m0[0].contains(0) && m0[0].contains(1), "test needs a mixed mask")
        let xd = x.map(Double.init)
        let totalGates = Double(rows * G.reduce(0, +))
        let base = ReferenceModel(net)
        let gateInputs = base.mlpForward(xd, rows: rows, steMask: (m0, p0)).1  // gates read detached inputs
        check(net, base) { r in
            let (logits, psum) = r.mlpLogits(xd, rows: self.rows, steMask: (m0, p0), gateInputs: gateInputs)
            return ReferenceModel.crossEntropy(logits, labels: y, classes: 3) + lambda * psum / totalGates
        }
    }

    func testSTELowRankGate() throws { try steCheck(gate: "lowrank:3") }
    func testSTEFullGate() throws { try steCheck(gate: "full") }
    func testSTEStaticGate() throws { try steCheck(gate: "static") }
    func testSTEBlockGateUnevenBlocks() throws { try steCheck(gate: "block:4", hidden: [10, 7]) }
    func testSTEMinKeepTwoThreads() throws { try steCheck(gate: "lowrank:2", minKeep: 3, threads: 2) }

    func moeCheck(topK: Int, capacity: Double) throws {
        let spec = ModelSpec(kind: .moe, inputFeatures: 5, hidden: [12], classes: 3, experts: 4, topK: topK,
                             capacityFactor: capacity, expertHidden: 4)
        var cfg = TrainingConfig()
        cfg.loadBalanceWeight = 0.5; cfg.zLossWeight = 0.1
        // A router with real preferences (the default init is near-uniform).
        let (net, _, x, y) = try run(spec, config: cfg) { net in
            var rng = SplitMix64(seed: 5)
            let w = net.param("router.weight")
            for i in 0..<w.count { w.value[i] = rng.nextGaussian() }
        }
        let xd = x.map(Double.init)
        check(net, ReferenceModel(net)) { r in
            let (logits, aux, _) = r.moe(xd, rows: self.rows, lbWeight: 0.5, zWeight: 0.1)
            return ReferenceModel.crossEntropy(logits, labels: y, classes: 3) + aux
        }
    }
    func testMoERouterTop1() throws { try moeCheck(topK: 1, capacity: 2) }
    func testMoERouterTop2WithDrops() throws { try moeCheck(topK: 2, capacity: 0.5) }

    /// λ = 0 with tau = 0 (every unit on) must reproduce the dense model's gradients exactly.
    func testGateAllOnReproducesDenseGradients() throws {
        let dims = (input: 9, hidden: [13, 6], classes: 4)
        let dense = try Network(spec: ModelSpec(kind: .dense, inputFeatures: dims.input, hidden: dims.hidden, classes: dims.classes), seed: 3)
        let dg = try Network(spec: ModelSpec(kind: .dg, inputFeatures: dims.input, hidden: dims.hidden, classes: dims.classes,
                                             gate: "lowrank:4", threshold: 0), seed: 3)
        for p in dense.params { dg.param(p.name).value.update(from: p.value, count: p.count) }
        let x = randomInputs(rows * dims.input, seed: 1), y = randomLabels(rows, classes: dims.classes, seed: 2)
        for net in [dense, dg] {
            let t = try Trainer(network: net, engine: makeEngine(), config: TrainingConfig())
            try x.withUnsafeBufferPointer { xp in
                try y.withUnsafeBufferPointer { yp in
                    _ = try t.computeGradients(x: xp.baseAddress!, labels: yp.baseAddress!, batch: rows, lambda: 0)
                }
            }
        }
        for p in dense.params {
            XCTAssertEqual(p.grads, dg.param(p.name).grads, "\(p.name)")
        }
    }

    /// Same seed and thread count → bit-identical parameters after a few steps.
    func testTrainingIsDeterministic() throws {
        func train() throws -> [Float] {
            let spec = ModelSpec(kind: .dropout, inputFeatures: 8, hidden: [16], classes: 3)
            let net = try Network(spec: spec, seed: 4)
            var cfg = TrainingConfig(); cfg.seed = 9
            let t = try Trainer(network: net, engine: makeEngine(threads: 2), config: cfg)
            let x = randomInputs(32 * 8, seed: 1), y = randomLabels(32, classes: 3, seed: 2)
            for _ in 0..<3 {
                try x.withUnsafeBufferPointer { xp in
                    try y.withUnsafeBufferPointer { yp in
                        _ = try t.computeGradients(x: xp.baseAddress!, labels: yp.baseAddress!, batch: 32)
                    }
                }
                t.applyUpdate()
            }
            return net.params.flatMap(\.values)
        }
        XCTAssertEqual(try train(), try train())
    }

    func testSGDMomentumStep() throws {
        let spec = ModelSpec(kind: .dense, inputFeatures: 3, hidden: [4], classes: 2)
        let net = try Network(spec: spec, seed: 1)
        var cfg = TrainingConfig(); cfg.optimizer = .sgd; cfg.learningRate = 0.1; cfg.momentum = 0.5
        let t = try Trainer(network: net, engine: makeEngine(), config: cfg)
        let p = net.param("output.bias")
        let w0 = p.values
        p.grad.update(repeating: 1, count: p.count)
        for q in net.params where q !== p { q.grad.update(repeating: 0, count: q.count) }
        t.applyUpdate(); t.applyUpdate()
        // v1 = 1, w1 = w0 − 0.1; v2 = 1.5, w2 = w1 − 0.15.
        for i in 0..<p.count { XCTAssertEqual(p.value[i], w0[i] - 0.25, accuracy: 1e-6) }
    }
}
