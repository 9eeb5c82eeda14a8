import DGKernels
import DGRuntime
import XCTest

/// Pre-packed weights: all panels, selected panels (block masks aligned to NR), scattered and compact
/// outputs, against the float64 reference; untouched columns must stay untouched.
final class PackedWeightsTests: XCTestCase {
    /// Streamed weights (prefetched a panel ahead from inside the micro-kernel) compute exactly what the others do:
    /// several panels, row counts around MR, K in one block and K-blocked, both ISAs, 1 and 2 workers, A packed and
    /// read in place; and `MoEEngine.pack` marks experts streamed exactly when together they overflow this core's L3.
    func testStreamedWeightsMatchUnstreamedAndMoEMarksThem() throws {
        var rng = SplitMix64(seed: 5)
        for ks in KernelSet.available() {
            for threads in [1, 2] {
                let engine = GemmEngine(kernels: ks, executor: ConcurrentPerformExecutor(workers: threads))
                engine.parallelThresholdMACs = 0
                for (m, n, k) in [(1, ks.nr * 3, 40), (5, ks.nr * 4 + 3, 784), (8, ks.nr * 16, 512), (13, ks.nr * 2, 1500),
                                  (64, ks.nr * 9 + 1, 300), (7, ks.nr * 3, 33)] {
                    let x = (0..<(m * k)).map { _ in rng.nextFloat() - 0.5 }
                    let w = (0..<(n * k)).map { _ in rng.nextFloat() - 0.5 }
                    let packed = w.withUnsafeBufferPointer { engine.packWeights($0.baseAddress!, n: n, k: k, ldw: k) }
                    // `then`: the next weights' first panel is prefetched during the last (itself, here).
                    func run(streamed: Bool, then: Bool = false) -> [Float] {
                        packed.streamed = streamed
                        var c = [Float](repeating: .nan, count: m * n)
                        x.withUnsafeBufferPointer { xp in c.withUnsafeMutableBufferPointer { cp in
                            engine.gemm(m: m, a: .rowMajor(xp.baseAddress!, ld: k), packed: packed, panelRange: 0..<packed.panelCount,
                                        c: OutputOperand(base: cp.baseAddress!, rowStride: n), epilogue: Epilogue(relu: true),
                                        then: then ? packed : nil)
                        } }
                        return c
                    }
                    let tag = "\(ks.name) threads \(threads) m \(m) n \(n) k \(k)"
                    let plain = run(streamed: false)
                    XCTAssertEqual(run(streamed: true), plain, tag)
                    XCTAssertEqual(run(streamed: true, then: true), plain, tag + " then")
                }
            }
        }
        let moe = MoEEngine(gemm: GemmEngine(kernels: try KernelSet.select(.auto), executor: ConcurrentPerformExecutor(workers: 1)))
        for (d, h) in [(16, 8), (512, 512)] {
            let w = try MoEWeights.random(inFeatures: d, hidden: h, outFeatures: d, experts: 4, seed: 3)
            let packed = moe.pack(w)
            let total = (packed.w1 + packed.w2).reduce(0) { $0 + $1.bytes }
            let nr = moe.gemm.kernels.nr
            XCTAssertEqual(packed.w1[0].bytes, (h + nr - 1) / nr * nr * d * 4, "W1 panels, zero-padded")
            XCTAssertEqual(packed.w2[0].bytes, (d + nr - 1) / nr * nr * h * 4, "W2 panels, zero-padded")
            XCTAssertTrue((packed.w1 + packed.w2).allSatisfy { $0.streamed == PackedWeights.streams(bytes: total) }, "D \(d) H \(h)")
        }
    }

    /// Per-worker scratch slots: 64-byte aligned, independent of each other, and growing on demand (contents of a
    /// grown slot are not kept, the other slots' are).
    func testSlotBuffersAreAlignedIndependentAndGrow() {
        let slots = SlotBuffers(count: 3, capacity: 8)
        var pointers: [UnsafeMutablePointer<Float>] = []
        for s in 0..<3 {
            let p = slots.reserve(s, 40)
            XCTAssertEqual(Int(bitPattern: p) % 64, 0, "slot \(s) aligned")
            for i in 0..<40 { p[i] = Float(s * 100 + i) }
            pointers.append(p)
        }
        XCTAssertEqual(Set(pointers.map { Int(bitPattern: $0) }).count, 3, "distinct slots")
        XCTAssertEqual(slots.reserve(1, 40), pointers[1], "no growth within capacity")
        let grown = slots.reserve(1, 100_000)
        XCTAssertEqual(Int(bitPattern: grown) % 64, 0)
        for i in 0..<100_000 { grown[i] = 1 }  // the whole new capacity is writable
        for s in [0, 2] { for i in 0..<40 { XCTAssertEqual(slots.reserve(s, 40)[i], Float(s * 100 + i)) } }
    }

    func testPrepackedMatchesReferenceForSelectedPanels() throws {
        var rng = SplitMix64(seed: 99)
        for ks in KernelSet.available() {
            for threads in [1, 2, 5] {
                let engine = GemmEngine(kernels: ks, executor: ConcurrentPerformExecutor(workers: threads))
                engine.parallelThresholdMACs = 0
                for (m, n, k) in [(1, 70, 33), (7, ks.nr * 3, 17), (37, ks.nr * 4 + 5, 300), (64, 257, 784), (3, 1, 1),
                                  (200, ks.nr * 21 + 3, 40)] {
                    let x = (0..<(m * k)).map { _ in rng.nextFloat() - 0.5 }
                    let w = (0..<(n * k)).map { _ in rng.nextFloat() - 0.5 }
                    let bias = (0..<n).map { _ in rng.nextFloat() - 0.5 }
                    let panelCount = (n + ks.nr - 1) / ks.nr
                    let selections: [[Int32]?] = [nil, [], [0], (0..<panelCount).filter { $0 % 2 == 1 }.map(Int32.init),
                                                  [Int32(panelCount - 1)]]
                    for sel in selections {
                        var got = [Float](repeating: -9, count: m * n)
                        let packed = w.withUnsafeBufferPointer { engine.packWeights($0.baseAddress!, n: n, k: k, ldw: k) }
                        let cost = x.withUnsafeBufferPointer { xp in bias.withUnsafeBufferPointer { bp in
                            got.withUnsafeMutableBufferPointer { cp in
                                let out = OutputOperand(base: cp.baseAddress!, rowStride: n)
                                func run(_ panels: UnsafeBufferPointer<Int32>?) -> KernelCost {
                                    engine.gemm(m: m, a: .rowMajor(xp.baseAddress!, ld: k), packed: packed, panels: panels,
                                                c: out, epilogue: Epilogue(bias: bp.baseAddress!, relu: true))
                                }
                                if let sel { return sel.withUnsafeBufferPointer { run($0) } } else { return run(nil) }
                            } } }
                        let active = Set((sel ?? (0..<panelCount).map(Int32.init)).flatMap { p in
                            (Int(p) * ks.nr)..<min(n, Int(p + 1) * ks.nr) })
                        XCTAssertEqual(cost.macs, m * active.count * k)
                        let ref = Reference.sgemm(transB: true, m: m, n: n, k: k, a: x, lda: k, b: w, ldb: k)
                        for i in 0..<m {
                            for j in 0..<n {
                                let v = got[i * n + j]
                                if active.contains(j) {
                                    let want = max(ref[i * n + j] + Double(bias[j]), 0)
                                    XCTAssertEqual(Double(v), want, accuracy: 1e-4 * (1 + abs(want)) * 4,
                                                   "\(ks.name) t\(threads) m\(m) n\(n) k\(k) sel \(String(describing: sel)) [\(i),\(j)]")
                                } else {
                                    XCTAssertEqual(v, -9, "unselected column \(j) was written")
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// NR/2-unit blocks on half panels (AVX-512), A through gathered row pointers: every half block of a layer whose
    /// width is not a multiple of NR/2, edge strips (m not a multiple of MR), several K blocks, beta/bias/ReLU.
    func testHalfPanelBlocksMatchReference() throws {
        var rng = SplitMix64(seed: 17)
        for ks in KernelSet.available() {
            let engine = GemmEngine(kernels: ks)
            guard engine.hasHalfPanelKernel else { continue }
            let half = ks.nr / 2
            var checked = 0
            for (m, n, k) in [(1, 40, 17), (5, 3 * half + 7, 33), (6, 2 * ks.nr, 240), (13, 70, 784), (64, half, 1)] {
                let t = NarrowCase(m: m, n: n, k: k, engine: engine, rng: &rng)
                for lo in stride(from: 0, to: n, by: half) {
                    let width = min(half, n - lo), beta: Float = lo % (2 * half) == 0 ? 0 : 0.5
                    t.check(lo: lo, width: width, beta: beta, rng: &rng, "\(ks.name) m\(m) n\(n) k\(k) lo\(lo)") { a, c, e in
                        engine.gemmHalfPanel(m: m, a: a, packed: t.packed, firstUnit: lo, c: c, epilogue: e)
                    }
                    checked += 1
                }
            }
            XCTAssertGreaterThan(checked, 10)
        }
    }

    /// A whole panel and half the next in one pass (AVX-512, the packed gather's last 33–48 units): widths 33…48, edge
    /// strips, gathered rows, beta/bias/ReLU, all of K in one call and (k large enough that B leaves the L2 budget)
    /// K-blocked.
    func testPanelAndHalfMatchesReference() throws {
        var rng = SplitMix64(seed: 23)
        for ks in KernelSet.available() where ks.panelAndHalfGemm != nil {
            let engine = GemmEngine(kernels: ks)
            let nr = ks.nr, bp = ks.blocking
            let longK = bp.mc * bp.kc / (nr + nr / 2) + 37
            for (m, n, k, beta) in [(1, nr + 1, 17, Float(0)), (7, nr + nr / 2, 240, 0.5), (13, nr + 13, 784, 0),
                                    (64, nr + 8, 1, 0), (13, nr + 13, longK, 0.5), (3, nr + nr / 2, longK, 0)] {
                let t = NarrowCase(m: m, n: n, k: k, engine: engine, rng: &rng)
                t.check(lo: 0, width: n, beta: beta, rng: &rng, "\(ks.name) m\(m) n\(n) k\(k)") { a, c, e in
                    engine.gemmPanelAndHalf(m: m, a: a, packed: t.packed, c: c, epilogue: e)
                }
            }
        }
    }

    func testCompactOutputThroughColumnMap() {
        var rng = SplitMix64(seed: 3)
        let ks = KernelSet.available()[0]
        let engine = GemmEngine(kernels: ks)
        let m = 5, n = ks.nr * 3, k = 40
        let x = (0..<(m * k)).map { _ in rng.nextFloat() - 0.5 }
        let w = (0..<(n * k)).map { _ in rng.nextFloat() - 0.5 }
        let panels: [Int32] = [2, 0]
        // unit → compact column: panel 2's units first, then panel 0's.
        var map = [Int32](repeating: -1, count: n)
        for (s, p) in panels.enumerated() { for j in 0..<ks.nr { map[Int(p) * ks.nr + j] = Int32(s * ks.nr + j) } }
        var got = [Float](repeating: 0, count: m * 2 * ks.nr)
        let packed = w.withUnsafeBufferPointer { engine.packWeights($0.baseAddress!, n: n, k: k, ldw: k) }
        x.withUnsafeBufferPointer { xp in map.withUnsafeBufferPointer { mp in panels.withUnsafeBufferPointer { pp in
            got.withUnsafeMutableBufferPointer { cp in
                _ = engine.gemm(m: m, a: .rowMajor(xp.baseAddress!, ld: k), packed: packed, panels: pp,
                                c: OutputOperand(base: cp.baseAddress!, rowStride: 2 * ks.nr, colIndex: mp.baseAddress!))
            } } } }
        let ref = Reference.sgemm(transB: true, m: m, n: n, k: k, a: x, lda: k, b: w, ldb: k)
        for i in 0..<m {
            for (s, p) in panels.enumerated() {
                for j in 0..<ks.nr {
                    XCTAssertEqual(Double(got[i * 2 * ks.nr + s * ks.nr + j]), ref[i * n + Int(p) * ks.nr + j], accuracy: 1e-4)
                }
            }
        }
    }
}

/// Operands for the narrow-kernel tests: W (n × k, packed) and x with m + 3 rows, of which `rows` gathers m (repeats
/// allowed), so A is read through a row map as the gather paths do.
private struct NarrowCase {
    let m: Int, k: Int
    let x: [Float], w: [Float], bias: [Float], rows: [Int32]
    let packed: PackedWeights

    init(m: Int, n: Int, k: Int, engine: GemmEngine, rng: inout SplitMix64) {
        self.m = m; self.k = k
        let rowsTotal = m + 3
        x = (0..<(rowsTotal * k)).map { _ in rng.nextFloat() - 0.5 }
        w = (0..<(n * k)).map { _ in rng.nextFloat() - 0.5 }
        bias = (0..<n).map { _ in rng.nextFloat() - 0.5 }
        rows = (0..<m).map { _ in Int32(rng.next() % UInt64(rowsTotal)) }
        let w = self.w
        packed = w.withUnsafeBufferPointer { engine.packWeights($0.baseAddress!, n: n, k: k, ldw: k) }
    }

    /// Runs `fast` (A, C, epilogue; C = m × width for units lo..<lo + width, pre-filled at random) against the float64
    /// reference with beta, bias and ReLU.
    func check(lo: Int, width: Int, beta: Float, rng: inout SplitMix64, _ tag: String,
               fast: (MatrixOperand, OutputOperand, Epilogue) -> Void) {
        let c0 = (0..<(m * width)).map { _ in rng.nextFloat() - 0.5 }
        var got = c0, want = c0
        let k = self.k, m = self.m
        x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in bias.withUnsafeBufferPointer { bp in
            rows.withUnsafeBufferPointer { rp in
                let a = MatrixOperand(base: xp.baseAddress!, rowStride: k, colStride: 1, rowIndex: rp.baseAddress!)
                got.withUnsafeMutableBufferPointer { cp in
                    // The kernels index the bias by unit (they shift it by lo themselves).
                    fast(a, OutputOperand(base: cp.baseAddress!, rowStride: width), Epilogue(beta: beta, bias: bp.baseAddress!, relu: true))
                }
                want.withUnsafeMutableBufferPointer { cp in
                    Reference.gemm(m: m, n: width, k: k, a: a,
                                   b: MatrixOperand(base: wp.baseAddress! + lo * k, rowStride: 1, colStride: k),
                                   c: OutputOperand(base: cp.baseAddress!, rowStride: width),
                                   epilogue: Epilogue(beta: beta, bias: bp.baseAddress! + lo, relu: true))
                }
            }
        } } }
        for i in got.indices {
            XCTAssertEqual(got[i], want[i], accuracy: 1e-4 * (Float(k).squareRoot() + abs(want[i])), "\(tag) [\(i)]")
        }
    }
}
