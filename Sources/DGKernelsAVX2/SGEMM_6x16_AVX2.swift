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
    _ bias: UnsafePointer<Float>?, _ relu: Bool, _ rows: Int, _ prefetch: UnsafeRawPointer?
) {
    let at: (Int, Int) -> Float = { k, i in a[k &* 6 &+ i] }
    microKernel6x16(kc, at, b, 16, c, ldc, beta, bias, relu, rows, prefetch: prefetch)
}

/// The same tile with A read in place through six row pointers; see `sgemmRowSourceMicroKernelAVX512_6x32`.
@inline(never)
public func sgemmRowSourceMicroKernelAVX2_6x16(
    _ kc: Int, _ a: UnsafePointer<UnsafePointer<Float>>, _ b: UnsafePointer<Float>,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ beta: Float,
    _ bias: UnsafePointer<Float>?, _ relu: Bool, _ rows: Int, _ prefetch: UnsafeRawPointer?
) {
    let rows6 = SixRowPointers(a)
    let at: (Int, Int) -> Float = { k, i in rows6.element(k, i) }
    microKernel6x16(kc, at, b, 16, c, ldc, beta, bias, relu, rows, prefetch: prefetch)
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

/// Gathered-row gemv for a few samples at once (4 rows × 2 samples of ymm dot products); see `sgemvIndexedMultiBody`.
@inline(never)
public func sgemvIndexedMultiAVX2(
    _ n: Int, _ k: Int, _ w: UnsafePointer<Float>, _ ldw: Int, _ rows: UnsafePointer<Int32>, _ m: Int,
    _ x: UnsafePointer<Float>, _ ldx: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ scatter: Bool,
    _ bias: UnsafePointer<Float>?, _ relu: Bool
) {
    sgemvIndexedMultiBody(SIMD8<Float>.self, n, k, w, ldw, rows, m, x, ldx, y, ldy, scatter, bias, relu, wide: false)
}

/// Unit-major dot products (per-sample masks, narrow gates: rows × their users); see `sgemvRowSamplesBody`.
@inline(never)
public func sgemvRowSamplesAVX2(
    _ rows: Int, _ n: Int, _ k: Int, _ w: UnsafePointer<Float>, _ ldw: Int, _ samples: UnsafePointer<Int32>,
    _ x: UnsafePointer<Float>, _ ldx: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int,
    _ bias: UnsafePointer<Float>?, _ relu: Bool
) {
    sgemvRowSamplesBody(SIMD8<Float>.self, rows, n, k, w, ldw, samples, x, ldx, y, ldy, bias, relu)
}
