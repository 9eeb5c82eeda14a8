import DGKernelsSIMD

// AVX2+FMA micro-kernel: a 6×16 tile of C held in 12 ymm accumulators (SIMD8<Float>).
// Compiled with -march=x86-64-v3 (Package.swift), so `addingProduct` lowers to vfmadd231ps ymm.
// Packed layouts (see DGKernels/Pack): A panel = kc × 6 floats (k-major), B panel = kc × 16 floats.

public let avx2TileRows = 6
public let avx2TileCols = 16

/// C[0..<6, 0..<16] (row stride `ldc`) = acc + beta·C (+ bias[j]) (then max(·,0) if relu).
/// `beta == 0` never reads C, so C may hold NaN. Rows ≥ `rows` are not stored (edge row panels);
/// partial column tiles go through a scratch tile in the loop nest.
@inline(never)
public func sgemmMicroKernelAVX2_6x16(
    _ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ beta: Float,
    _ bias: UnsafePointer<Float>?, _ relu: Bool, _ rows: Int
) {
    microKernel6x16(kc, { k, i in a[k &* 6 &+ i] }, b, c, ldc, beta, bias, relu, rows)
}

/// The same tile with A read in place through six row pointers; see `sgemmRowSourceMicroKernelAVX512_6x32`.
@inline(never)
public func sgemmRowSourceMicroKernelAVX2_6x16(
    _ kc: Int, _ a: UnsafePointer<UnsafePointer<Float>>, _ b: UnsafePointer<Float>,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ beta: Float,
    _ bias: UnsafePointer<Float>?, _ relu: Bool, _ rows: Int
) {
    let a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3], a4 = a[4], a5 = a[5]
    microKernel6x16(kc, { k, i in
        switch i { case 0: a0[k]; case 1: a1[k]; case 2: a2[k]; case 3: a3[k]; case 4: a4[k]; default: a5[k] }
    }, b, c, ldc, beta, bias, relu, rows)
}

/// Shared body of both 6×16 kernels; `a(k, i)` is A[i, k].
@inline(__always)
func microKernel6x16(
    _ kc: Int, _ a: (Int, Int) -> Float, _ b: UnsafePointer<Float>,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ beta: Float,
    _ bias: UnsafePointer<Float>?, _ relu: Bool, _ rows: Int
) {
    // One SIMD16 accumulator per row (two ymm after legalisation). Written per row so that each
    // broadcast dies right after its two FMAs: with two separate SIMD8 columns LLVM grouped the FMAs by
    // column, kept six broadcasts live and spilled accumulators (16 ymm registers only).
    typealias V = SIMD8<Float>
    typealias W = SIMD16<Float>
    var r0 = W(), r1 = W(), r2 = W(), r3 = W(), r4 = W(), r5 = W()
    var bp = UnsafeRawPointer(b)
    var k = 0
    while k < kc {
        let bw = bp.loadUnaligned(as: W.self)
        r0 = r0.addingProduct(W(repeating: a(k, 0)), bw)
        r1 = r1.addingProduct(W(repeating: a(k, 1)), bw)
        r2 = r2.addingProduct(W(repeating: a(k, 2)), bw)
        r3 = r3.addingProduct(W(repeating: a(k, 3)), bw)
        r4 = r4.addingProduct(W(repeating: a(k, 4)), bw)
        r5 = r5.addingProduct(W(repeating: a(k, 5)), bw)
        bp += 64; k &+= 1
    }
    @inline(__always) func lo(_ w: W) -> V { w.lowHalf }
    @inline(__always) func hi(_ w: W) -> V { w.highHalf }
    let c00 = lo(r0), c01 = hi(r0), c10 = lo(r1), c11 = hi(r1), c20 = lo(r2), c21 = hi(r2)
    let c30 = lo(r3), c31 = hi(r3), c40 = lo(r4), c41 = hi(r4), c50 = lo(r5), c51 = hi(r5)
    let bv = V(repeating: beta)
    let bias0 = bias.map { UnsafeRawPointer($0).loadUnaligned(as: V.self) } ?? V()
    let bias1 = bias.map { UnsafeRawPointer($0).loadUnaligned(fromByteOffset: 32, as: V.self) } ?? V()
    let zero = V()
    @inline(__always) func store(_ row: Int, _ x0: V, _ x1: V) {
        let p = UnsafeMutableRawPointer(c + row * ldc)
        var y0 = x0 + bias0, y1 = x1 + bias1
        if beta != 0 {
            y0 = y0.addingProduct(bv, p.loadUnaligned(as: V.self))
            y1 = y1.addingProduct(bv, p.loadUnaligned(fromByteOffset: 32, as: V.self))
        }
        if relu { y0 = y0.replacing(with: zero, where: y0 .< zero); y1 = y1.replacing(with: zero, where: y1 .< zero) }
        p.storeBytes(of: y0, as: V.self)
        p.storeBytes(of: y1, toByteOffset: 32, as: V.self)
    }
    // Only the first `rows` rows are valid (edge row panels); the zero-padded rest is dropped.
    store(0, c00, c01)
    if rows > 1 { store(1, c10, c11) }
    if rows > 2 { store(2, c20, c21) }
    if rows > 3 { store(3, c30, c31) }
    if rows > 4 { store(4, c40, c41) }
    if rows > 5 { store(5, c50, c51) }
}

/// y[i] = dot(W[i, 0..<k], x) (+ beta·y[i]) (+ bias[i]) (relu) for i in 0..<n; W row-major with `ldw`.
/// Batch-1 path: the shared body (DGKernelsSIMD) specialised for SIMD8<Float> and this target's ISA.
@inline(never)
public func sgemvRowsAVX2(
    _ n: Int, _ k: Int, _ w: UnsafePointer<Float>, _ ldw: Int, _ x: UnsafePointer<Float>,
    _ y: UnsafeMutablePointer<Float>, _ beta: Float, _ bias: UnsafePointer<Float>?, _ relu: Bool
) {
    sgemvRowsBody(SIMD8<Float>.self, n, k, w, ldw, x, y, beta, bias, relu)
}

/// Peak probe: `iters` steps of 12 independent ymm FMA chains (16 ymm registers); returns a value so nothing is elided.
/// FLOPs executed = iters × 12 chains × 8 lanes × 2.
@inline(never)
public func fmaPeakLoopAVX2(_ iters: Int, _ seed: Float) -> Float {
    typealias V = SIMD8<Float>
    let m = V(repeating: 0.5), a = V(repeating: seed)  // x ← a + x·m converges: no inf, no denormals
    var x0 = V(repeating: seed), x1 = x0 + 1, x2 = x0 + 2, x3 = x0 + 3, x4 = x0 + 4, x5 = x0 + 5
    var x6 = x0 + 6, x7 = x0 + 7, x8 = x0 + 8, x9 = x0 + 9, x10 = x0 + 10, x11 = x0 + 11
    for _ in 0..<iters {
        x0 = a.addingProduct(x0, m); x1 = a.addingProduct(x1, m); x2 = a.addingProduct(x2, m)
        x3 = a.addingProduct(x3, m); x4 = a.addingProduct(x4, m); x5 = a.addingProduct(x5, m)
        x6 = a.addingProduct(x6, m); x7 = a.addingProduct(x7, m); x8 = a.addingProduct(x8, m)
        x9 = a.addingProduct(x9, m); x10 = a.addingProduct(x10, m); x11 = a.addingProduct(x11, m)
    }
    let s = (x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7) + (x8 + x9 + x10 + x11)
    return s.sum()
}

/// One row of C against one packed B panel (kc × 16, k-major): y[0..<16] = x·panel (+beta·y, bias, relu).
/// The batch-1 kernel for pre-packed weights; four k-interleaved accumulators hide FMA latency.
@inline(never)
public func sgemvPanelAVX2_16(
    _ kc: Int, _ x: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
    _ y: UnsafeMutablePointer<Float>, _ beta: Float, _ bias: UnsafePointer<Float>?, _ relu: Bool
) {
    typealias W = SIMD16<Float>
    var a = W(), bb = W(), c = W(), d = W()
    let bp = UnsafeRawPointer(b)
    var k = 0
    while k + 4 <= kc {
        let o = k * 64
        a = a.addingProduct(W(repeating: x[k]), bp.loadUnaligned(fromByteOffset: o, as: W.self))
        bb = bb.addingProduct(W(repeating: x[k + 1]), bp.loadUnaligned(fromByteOffset: o + 64, as: W.self))
        c = c.addingProduct(W(repeating: x[k + 2]), bp.loadUnaligned(fromByteOffset: o + 128, as: W.self))
        d = d.addingProduct(W(repeating: x[k + 3]), bp.loadUnaligned(fromByteOffset: o + 192, as: W.self))
        k += 4
    }
    while k < kc {
        a = a.addingProduct(W(repeating: x[k]), bp.loadUnaligned(fromByteOffset: k * 64, as: W.self))
        k += 1
    }
    var v = (a + bb) + (c + d)
    if let bias { v += UnsafeRawPointer(bias).loadUnaligned(as: W.self) }
    let yp = UnsafeMutableRawPointer(y)
    if beta != 0 { v = v.addingProduct(W(repeating: beta), yp.loadUnaligned(as: W.self)) }
    if relu { v = v.replacing(with: 0, where: v .< 0) }
    yp.storeBytes(of: v, as: W.self)
}

/// Gathered-row gemv (unit masks at batch 1); see `sgemvIndexedBody` in DGKernelsSIMD.
@inline(never)
public func sgemvIndexedAVX2(
    _ n: Int, _ k: Int, _ w: UnsafePointer<Float>, _ ldw: Int, _ rows: UnsafePointer<Int32>, _ x: UnsafePointer<Float>,
    _ y: UnsafeMutablePointer<Float>, _ scatter: Bool, _ bias: UnsafePointer<Float>?, _ relu: Bool
) {
    sgemvIndexedBody(SIMD8<Float>.self, n, k, w, ldw, rows, x, y, scatter, bias, relu)
}
