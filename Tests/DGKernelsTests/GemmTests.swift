@testable import DGKernels
import DGRuntime
import XCTest

/// SGEMM against the float64 reference on randomized and edge shapes, every variant, 1, 2 and 5 threads,
/// every kernel set this CPU runs, default and deliberately tiny blocking (so every loop edge is hit).
final class GemmTests: XCTestCase {
    static let edgeDims = [1, 2, 3, 5, 7, 13, 17, 31, 33, 63, 64, 65, 127, 255, 257, 784]

    struct Variant { var transA: Bool; var transB: Bool; var name: String }
    static let variants = [
        Variant(transA: false, transB: true, name: "A·Bᵀ"),
        Variant(transA: false, transB: false, name: "A·B"),
        Variant(transA: true, transB: false, name: "Aᵀ·B"),
    ]

    /// Engines under test: each available ISA × {1, 2 threads} × {default, tiny blocking}.
    func engines() -> [(String, GemmEngine)] {
        var out: [(String, GemmEngine)] = []
        for ks in KernelSet.available() {
            let tiny = ks.with(blocking: BlockingParameters(mr: ks.mr, nr: ks.nr, mc: ks.mr * 2, kc: 16, nc: ks.nr * 2))
            for (label, set) in [("default", ks), ("tiny", tiny)] {
                out.append(("\(ks.name)/\(label)/1t", GemmEngine(kernels: set, executor: SerialExecutor())))
                for shared in [true, false] {  // shared packed B (BLIS split) and per-worker packing
                    let e2 = GemmEngine(kernels: set, executor: ConcurrentPerformExecutor(workers: 2))
                    e2.parallelThresholdMACs = 0  // force the parallel paths even on tiny shapes
                    e2.sharedPacking = shared
                    out.append(("\(ks.name)/\(label)/2t\(shared ? "" : "-private")", e2))
                }
                // BLIS's shared packed B also where B has only a few panels (which otherwise go one per rectangle).
                let e2s = GemmEngine(kernels: set, executor: ConcurrentPerformExecutor(workers: 2))
                e2s.parallelThresholdMACs = 0
                e2s.ownPanelLimit = 0
                out.append(("\(ks.name)/\(label)/2t-sharedB", e2s))
                // Five workers on two cores: odd shares, work stealing under real contention, panel groups.
                let e5 = GemmEngine(kernels: set, executor: ConcurrentPerformExecutor(workers: 5))
                e5.parallelThresholdMACs = 0
                if label == "tiny" { e5.sharedBudgetFloats = 3 * 16 * set.nr; e5.ownPanelLimit = 0 }  // shared B in stretches of a few K blocks
                out.append(("\(ks.name)/\(label)/5t", e5))
            }
        }
        return out
    }

    func randomMatrix(_ count: Int, _ rng: inout SplitMix64) -> [Float] {
        (0..<count).map { _ in rng.nextFloat() * 2 - 1 }
    }

    /// Checks |C − ref| ≤ 1e-4 · Σ|a||b| (the scale of the accumulated rounding error) + 1e-6.
    func check(_ engine: GemmEngine, _ v: Variant, m: Int, n: Int, k: Int, rng: inout SplitMix64,
               beta: Float = 0, bias: Bool = false, relu: Bool = false, label: String) throws {
        let a = randomMatrix(m * k, &rng), b = randomMatrix(k * n, &rng)
        let lda = v.transA ? m : k, ldb = v.transB ? k : n
        let biasV = randomMatrix(n, &rng)
        let c0 = beta != 0 ? randomMatrix(m * n, &rng) : [Float](repeating: .nan, count: m * n)
        var c = c0
        let cost = try a.withUnsafeBufferPointer { ap in
            try b.withUnsafeBufferPointer { bp in
                try biasV.withUnsafeBufferPointer { biasP in
                    try c.withUnsafeMutableBufferPointer { cp in
                        try engine.sgemm(transA: v.transA, transB: v.transB, m: m, n: n, k: k,
                                         a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb,
                                         c: cp.baseAddress!, ldc: n,
                                         epilogue: Epilogue(beta: beta, bias: bias ? biasP.baseAddress! : nil, relu: relu))
                    }
                }
            }
        }
        XCTAssertEqual(cost.macs, m * n * k)
        let ref = Reference.sgemm(transA: v.transA, transB: v.transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb)
        let absA = a.map { abs($0) }, absB = b.map { abs($0) }
        let scale = Reference.sgemm(transA: v.transA, transB: v.transB, m: m, n: n, k: k, a: absA, lda: lda, b: absB, ldb: ldb)
        for i in 0..<m {
            for j in 0..<n {
                var expect = ref[i * n + j] + (bias ? Double(biasV[j]) : 0)
                if beta != 0 { expect += Double(beta) * Double(c0[i * n + j]) }
                if relu { expect = max(expect, 0) }
                let got = Double(c[i * n + j])
                let tol = 1e-4 * (scale[i * n + j] + (bias ? abs(Double(biasV[j])) : 0) + abs(Double(beta)) + 1e-2)
                if !(abs(got - expect) <= tol) {
                    XCTFail("\(label) \(v.name) m=\(m) n=\(n) k=\(k) beta=\(beta) bias=\(bias) relu=\(relu): C[\(i),\(j)] = \(got), expected \(expect)")
                    return
                }
            }
        }
    }

    func testRandomizedShapesAllVariants() throws {
        var rng = SplitMix64(seed: 2024)
        let engines = engines()
        var cases = 0
        for v in Self.variants {
            for idx in 0..<520 {
                func dim() -> Int {
                    rng.next() % 2 == 0 ? Self.edgeDims[Int(rng.next() % UInt64(Self.edgeDims.count))] : 1 + Int(rng.next() % 200)
                }
                var m = dim(), n = dim(), k = dim()
                while m * n * k > 600_000 { m = max(1, m / 2); n = max(1, n / 3) + 0; k = max(1, k / 2) }
                let (label, engine) = engines[idx % engines.count]
                let epilogueKind = idx % 4
                try check(engine, v, m: m, n: n, k: k, rng: &rng,
                          beta: epilogueKind == 1 ? 1 : (epilogueKind == 3 ? 0.5 : 0),
                          bias: epilogueKind >= 2, relu: epilogueKind == 2 || epilogueKind == 3, label: label)
                cases += 1
            }
        }
        XCTAssertGreaterThanOrEqual(cases, 1500)
    }

    func testEdgeDimensionsExhaustivelySmall() throws {
        var rng = SplitMix64(seed: 7)
        let small = [1, 2, 3, 5, 7, 13, 17, 31, 33]
        for (label, engine) in engines() where label.contains("/2t") || label.contains("tiny") {
            for m in small { for n in small { for k in [1, 17, 33] {
                try check(engine, Self.variants[0], m: m, n: n, k: k, rng: &rng, bias: true, relu: true, label: label)
            } } }
        }
    }

    func testLargeLayerShapes() throws {
        var rng = SplitMix64(seed: 11)
        for (label, engine) in engines() where label.contains("default") {
            try check(engine, Self.variants[0], m: 64, n: 257, k: 784, rng: &rng, bias: true, relu: true, label: label)
            try check(engine, Self.variants[0], m: 1, n: 512, k: 784, rng: &rng, bias: true, relu: false, label: label)
            try check(engine, Self.variants[2], m: 127, n: 65, k: 255, rng: &rng, beta: 1, label: label)
            // Narrow outputs take the transposed path (Cᵀ = Bᵀ·Aᵀ, then the epilogue while transposing back).
            try check(engine, Self.variants[0], m: 256, n: 10, k: 512, rng: &rng, bias: true, relu: true, label: label)
            try check(engine, Self.variants[1], m: 100, n: 3, k: 33, rng: &rng, beta: 0.5, bias: true, label: label)
            try check(engine, Self.variants[2], m: 70, n: 1, k: 9, rng: &rng, beta: 1, label: label)
        }
    }

    func testGatheredOperandsMatchReference() throws {
        // Column map on W (shared unit mask), row map on X (per-sample group), scattered output.
        var rng = SplitMix64(seed: 5)
        for (label, engine) in engines() {
            let m = 37, d = 70, h = 90
            let x = randomMatrix(m * d, &rng), w = randomMatrix(h * d, &rng), bias = randomMatrix(h, &rng)
            let units: [Int32] = (0..<h).filter { $0 % 3 != 1 }.map(Int32.init)
            let rows: [Int32] = (0..<m).filter { $0 % 2 == 0 }.map(Int32.init)
            var got = [Float](repeating: -7, count: m * h), want = got
            x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in bias.withUnsafeBufferPointer { bp in
                units.withUnsafeBufferPointer { up in rows.withUnsafeBufferPointer { rp in
                    let a = MatrixOperand(base: xp.baseAddress!, rowStride: d, colStride: 1, rowIndex: rp.baseAddress!)
                    let b = MatrixOperand(base: wp.baseAddress!, rowStride: 1, colStride: d, colIndex: up.baseAddress!)
                    let e = Epilogue(bias: bp.baseAddress!, biasIndex: up.baseAddress!, relu: true)
                    got.withUnsafeMutableBufferPointer { cp in
                        let c = OutputOperand(base: cp.baseAddress!, rowStride: h, rowIndex: rp.baseAddress!, colIndex: up.baseAddress!)
                        engine.gemm(m: rows.count, n: units.count, k: d, a: a, b: b, c: c, epilogue: e)
                    }
                    want.withUnsafeMutableBufferPointer { cp in
                        let c = OutputOperand(base: cp.baseAddress!, rowStride: h, rowIndex: rp.baseAddress!, colIndex: up.baseAddress!)
                        Reference.gemm(m: rows.count, n: units.count, k: d, a: a, b: b, c: c, epilogue: e)
                    }
                } }
            } } }
            for i in 0..<(m * h) {
                XCTAssertEqual(got[i], want[i], accuracy: 1e-4 * max(1, abs(want[i])), "\(label) element \(i)")
                if abs(got[i] - want[i]) > 1e-3 { return }
            }
        }
    }

    /// The weight-rows orientation (W's rows read in place, activations packed): randomized and edge shapes,
    /// gathered samples and weight rows, scattered columns, beta/bias/ReLU, multiple K blocks and sample panels,
    /// every engine (1 and 2 threads, tiny blocking), against the float64 reference.
    func testWeightRowsGemmMatchesFloat64Reference() throws {
        var rng = SplitMix64(seed: 99)
        var cases = 0
        for (label, engine) in engines() {
            for idx in 0..<40 {
                let m = [1, 2, 3, 5, 17, 31, 32, 33, 64, 65, 100][Int(rng.next() % 11)]
                let n = [1, 2, 5, 6, 7, 13, 37, 64][Int(rng.next() % 8)]
                let k = [1, 3, 16, 17, 100, 257, 784][Int(rng.next() % 7)]
                let h = n + Int(rng.next() % 9), rowsTotal = m + Int(rng.next() % 5)
                let x = randomMatrix(rowsTotal * k, &rng), w = randomMatrix(h * k, &rng), bias = randomMatrix(h, &rng)
                // Gathered rows of W (sorted subset, or nil = first n rows) and of x (any order, or nil).
                let wRows: [Int32]? = idx % 3 == 0 ? nil : Array((0..<h).shuffled(using: &rng).prefix(n)).sorted().map(Int32.init)
                let xRows: [Int32]? = idx % 2 == 0 ? nil : (0..<m).map { _ in Int32(rng.next() % UInt64(rowsTotal)) }
                let scatter = idx % 4 == 1, beta: Float = idx % 5 == 2 ? 0.5 : 0, relu = idx % 2 == 0
                let ldc = scatter ? h : n
                let c0 = randomMatrix(m * ldc, &rng)
                var got = c0, want = c0
                x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in bias.withUnsafeBufferPointer { bp in
                    (wRows ?? [0]).withUnsafeBufferPointer { wr in (xRows ?? [0]).withUnsafeBufferPointer { xr in
                        let wIndex = wRows == nil ? nil : wr.baseAddress
                        let a = MatrixOperand(base: xp.baseAddress!, rowStride: k, colStride: 1, rowIndex: xRows == nil ? nil : xr.baseAddress)
                        let e = Epilogue(beta: beta, bias: bp.baseAddress!, biasIndex: wIndex, relu: relu)
                        got.withUnsafeMutableBufferPointer { cp in
                            let c = OutputOperand(base: cp.baseAddress!, rowStride: ldc, colIndex: scatter ? wIndex : nil)
                            engine.gemmWeightRows(m: m, n: n, k: k, a: a, w: wp.baseAddress!, ldw: k, wRows: wIndex, c: c, epilogue: e)
                        }
                        want.withUnsafeMutableBufferPointer { cp in
                            let c = OutputOperand(base: cp.baseAddress!, rowStride: ldc, colIndex: scatter ? wIndex : nil)
                            let b = MatrixOperand(base: wp.baseAddress!, rowStride: 1, colStride: k, colIndex: wIndex)
                            Reference.gemm(m: m, n: n, k: k, a: a, b: b, c: c, epilogue: e)
                        }
                    } }
                } } }
                for i in got.indices where !(abs(got[i] - want[i]) <= 1e-4 * (Float(k).squareRoot() + abs(want[i]))) {
                    XCTFail("\(label) m=\(m) n=\(n) k=\(k) wRows=\(wRows != nil) xRows=\(xRows != nil) scatter=\(scatter): C[\(i)] = \(got[i]), expected \(want[i])")
                    return
                }
                cases += 1
            }
        }
        XCTAssertGreaterThanOrEqual(cases, 200)
    }

    func testRejectsEmptyShapesShortLeadingDimensionsAndAliasing() throws {
        let engine = GemmEngine(kernels: try KernelSet.select(.auto))
        var buf = [Float](repeating: 1, count: 64)
        var out = [Float](repeating: 0, count: 64)
        try buf.withUnsafeMutableBufferPointer { p in
            try out.withUnsafeMutableBufferPointer { o in
                let a = UnsafePointer(p.baseAddress!)
                XCTAssertThrowsError(try engine.sgemm(m: 0, n: 2, k: 2, a: a, lda: 2, b: a, ldb: 2, c: o.baseAddress!, ldc: 2)) {
                    XCTAssertEqual($0 as? GemmError, .emptyShape(m: 0, n: 2, k: 2))
                }
                XCTAssertThrowsError(try engine.sgemm(m: 2, n: 2, k: 0, a: a, lda: 2, b: a, ldb: 2, c: o.baseAddress!, ldc: 2))
                XCTAssertThrowsError(try engine.sgemm(m: 2, n: 4, k: 2, a: a, lda: 2, b: a, ldb: 4, c: o.baseAddress!, ldc: 3)) {
                    XCTAssertEqual($0 as? GemmError, .leadingDimension(name: "ldc", value: 3, minimum: 4))
                }
                XCTAssertThrowsError(try engine.sgemm(m: 2, n: 2, k: 2, a: a, lda: 2, b: a + 8, ldb: 2, c: p.baseAddress! + 2, ldc: 2)) {
                    XCTAssertEqual($0 as? GemmError, .aliasing("A"))
                    XCTAssert("\($0)".contains("must not alias"))
                }
                XCTAssertNoThrow(try engine.sgemm(m: 2, n: 2, k: 2, a: a, lda: 2, b: a + 8, ldb: 2, c: o.baseAddress!, ldc: 2))
            }
        }
    }

    func testKernelSelection() throws {
        let none = CPUFeatures(vendor: "x", brand: "old cpu", family: 6, model: 1, avx2: false, fma: false,
                               avx512f: false, avx512vl: false, avx512bw: false, avx512dq: false)
        XCTAssertThrowsError(try KernelSet.select(.auto, cpu: none))
        var avx2Only = none; avx2Only.avx2 = true; avx2Only.fma = true
        XCTAssertEqual(try KernelSet.select(.auto, cpu: avx2Only).isa, .avx2)
        XCTAssertThrowsError(try KernelSet.select(.avx512, cpu: avx2Only)) {
            XCTAssert("\($0)".contains("--isa avx512"))
        }
        XCTAssertTrue(KernelBuild.isOptimized, "kernel targets must be compiled with -O in every configuration")
    }

    func testBlockingParametersFromCaches() {
        let p = BlockingParameters.from(cacheSizes: CacheSizes(l1d: 48 << 10, l2: 1 << 20, l3PerCore: 4 << 20), mr: 6, nr: 32)
        XCTAssertEqual(p.mc % 6, 0); XCTAssertEqual(p.nc % 32, 0)
        XCTAssertLessThanOrEqual((p.mr + p.nr) * p.kc * 4, 48 << 10)
        let d = BlockingParameters.defaults(mr: 6, nr: 16)
        XCTAssertGreaterThan(d.kc, 0)
    }
}

/// The rectangles a multi-worker GEMM shares out cover C exactly once, in both split orders.
final class WorkItemsTests: XCTestCase {
    func testRectanglesPartitionC() {
        for workers in [2, 3, 5, 16] {
            for mTiles in [1, 2, 5, 17, 43, 171] {
                for nPanels in [1, 3, 16, 33] {
                    for panelsFirst in [false, true] {
                        let mr = 6, m = mTiles * mr - (mTiles > 1 ? 2 : 0)
                        let items = WorkItems(mTiles: mTiles, nPanels: nPanels, mr: mr, mc: 96, workers: workers,
                                              panelsFirst: panelsFirst)
                        var covered = [Int](repeating: 0, count: mTiles * nPanels)
                        for item in 0..<items.count {
                            let (rows, panels) = items.rectangle(item, m: m)
                            XCTAssertFalse(rows.isEmpty || panels.isEmpty, "empty item \(item)")
                            XCTAssertEqual(rows.lowerBound % mr, 0)
                            XCTAssertLessThanOrEqual(rows.count, panelsFirst ? items.rowsPerBlock : min(96, items.rowsPerBlock))
                            XCTAssertLessThanOrEqual(panels.count, items.panelsPerGroup)
                            for tile in (rows.lowerBound / mr)..<((rows.upperBound + mr - 1) / mr) {
                                for p in panels { covered[tile * nPanels + p] += 1 }
                            }
                        }
                        let tileCounts = (0..<items.count).map { i -> Int in
                            let r = items.rectangle(i, m: m).rows
                            return (r.upperBound + mr - 1) / mr - r.lowerBound / mr
                        }
                        XCTAssertLessThanOrEqual(tileCounts.max()! - tileCounts.min()!, 1, "uneven row blocks")
                        XCTAssertEqual(covered, [Int](repeating: 1, count: mTiles * nPanels),
                                       "workers \(workers) tiles \(mTiles) panels \(nPanels) panelsFirst \(panelsFirst)")
                    }
                }
            }
        }
    }
}
