import CKernelHints
import DGKernelsSIMD

// AVX-512 micro-kernel: a 6×32 tile of C held in 12 zmm accumulators (SIMD16<Float>).
// Compiled with -march=x86-64-v4 (Package.swift), so `addingProduct` lowers to vfmadd231ps zmm.
// Packed layouts (see DGKernels/Pack): A panel = kc × 6 floats (k-major), B panel = kc × 32 floats.

public let avx512TileRows = 6
public let avx512TileCols = 32

/// C[0..<6, 0..<32] (row stride `ldc`) = acc + beta·C (+ bias[j]) (then max(·,0) if relu).
/// `beta == 0` never reads C, so C may hold NaN. Rows ≥ `rows` are not stored (edge row panels);
/// partial column tiles go through a scratch tile in the loop nest.
@inline(never)
public func sgemmMicroKernelAVX512_6x32(
    _ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ beta: Float,
    _ bias: UnsafePointer<Float>?, _ relu: Bool, _ rows: Int, _ prefetch: UnsafeRawPointer?
) {
    // Edge tiles (rows < 6: a small expert's last tokens, a per-sample group of a few samples) compute only their
    // rows; before, a 2-row tile cost as much as a full one.
    let at: (Int, Int) -> Float = { k, i in a[k &* 6 &+ i] }
    microKernel6x32(kc, at, b, c, ldc, beta, bias, relu, rows, prefetch: prefetch)
}

/// The same tile with A read in place: row i of A is `rows[i][0..<kc]` (six pointers; an edge tile repeats
/// its last row). Used with weights as the A side (gathered rows of W, no packing) and activations as the
/// packed B side, so a shared mask costs nothing to apply.
@inline(never)
public func sgemmRowSourceMicroKernelAVX512_6x32(
    _ kc: Int, _ a: UnsafePointer<UnsafePointer<Float>>, _ b: UnsafePointer<Float>,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ beta: Float,
    _ bias: UnsafePointer<Float>?, _ relu: Bool, _ rows: Int, _ prefetch: UnsafeRawPointer?
) {
    let rows6 = SixRowPointers(a)
    let at: (Int, Int) -> Float = { k, i in rows6.element(k, i) }
    microKernel6x32(kc, at, b, c, ldc, beta, bias, relu, rows, prefetch: prefetch)
}

/// A 6×16 tile against one half (16 columns) of a 32-wide packed B panel (B row stride 32 floats), with A read in
/// place through six row pointers: a 16-unit block of pre-packed weights times a handful of gathered samples runs
/// with nothing packed at all (per-sample unit-major groups, where packing the gathered rows per group cost as
/// much as the group's multiply-adds). Same contract as the other kernels otherwise.
@inline(never)
public func sgemmHalfPanelMicroKernelAVX512_6x16(
    _ kc: Int, _ a: UnsafePointer<UnsafePointer<Float>>, _ b: UnsafePointer<Float>,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ beta: Float,
    _ bias: UnsafePointer<Float>?, _ relu: Bool, _ rows: Int, _ prefetch: UnsafeRawPointer?
) {
    let rows6 = SixRowPointers(a)
    let at: (Int, Int) -> Float = { k, i in rows6.element(k, i) }
    microKernel6x16(kc, at, b, 32, c, ldc, beta, bias, relu, rows, twoChains: true)
}

/// A 6×48 tile: a whole 32-wide packed B panel (`b`) plus the first half of the next one (`b + panelStride`), A read in
/// place through six row pointers. The packed gather's last 33–48 active units run in one pass over the samples:
/// as a 32-wide and a separate 16-wide pass, x streamed twice and the 6×16 pass (one broadcast per FMA) ran at
/// ~65 % of this kernel's speed. 18 accumulators: each broadcast feeds three FMAs.
@inline(never)
public func sgemmPanelAndHalfMicroKernelAVX512_6x48(
    _ kc: Int, _ a: UnsafePointer<UnsafePointer<Float>>, _ b: UnsafePointer<Float>, _ panelStride: Int,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ beta: Float,
    _ bias: UnsafePointer<Float>?, _ relu: Bool, _ rows: Int
) {
    typealias V = SIMD16<Float>
    let r = SixRowPointers(a)
    var c00 = V(), c01 = V(), c02 = V(), c10 = V(), c11 = V(), c12 = V(), c20 = V(), c21 = V(), c22 = V()
    var c30 = V(), c31 = V(), c32 = V(), c40 = V(), c41 = V(), c42 = V(), c50 = V(), c51 = V(), c52 = V()
    var bp = UnsafeRawPointer(b), hp = UnsafeRawPointer(b + panelStride)
    var k = 0
    while k < kc {
        let b0 = bp.loadUnaligned(as: V.self)
        let b1 = bp.loadUnaligned(fromByteOffset: 64, as: V.self)
        let b2 = hp.loadUnaligned(as: V.self)
        var s = V(repeating: r.r0[k])
        c00 = c00.addingProduct(s, b0); c01 = c01.addingProduct(s, b1); c02 = c02.addingProduct(s, b2)
        if rows > 1 { s = V(repeating: r.r1[k]); c10 = c10.addingProduct(s, b0); c11 = c11.addingProduct(s, b1); c12 = c12.addingProduct(s, b2) }
        if rows > 2 { s = V(repeating: r.r2[k]); c20 = c20.addingProduct(s, b0); c21 = c21.addingProduct(s, b1); c22 = c22.addingProduct(s, b2) }
        if rows > 3 { s = V(repeating: r.r3[k]); c30 = c30.addingProduct(s, b0); c31 = c31.addingProduct(s, b1); c32 = c32.addingProduct(s, b2) }
        if rows > 4 { s = V(repeating: r.r4[k]); c40 = c40.addingProduct(s, b0); c41 = c41.addingProduct(s, b1); c42 = c42.addingProduct(s, b2) }
        if rows > 5 { s = V(repeating: r.r5[k]); c50 = c50.addingProduct(s, b0); c51 = c51.addingProduct(s, b1); c52 = c52.addingProduct(s, b2) }
        bp += 128; hp += 128; k &+= 1
    }
    let bv = V(repeating: beta), zero = V()
    let bias0 = bias.map { UnsafeRawPointer($0).loadUnaligned(as: V.self) } ?? zero
    let bias1 = bias.map { UnsafeRawPointer($0).loadUnaligned(fromByteOffset: 64, as: V.self) } ?? zero
    let bias2 = bias.map { UnsafeRawPointer($0).loadUnaligned(fromByteOffset: 128, as: V.self) } ?? zero
    @inline(__always) func store(_ row: Int, _ x0: V, _ x1: V, _ x2: V) {
        let p = UnsafeMutableRawPointer(c + row * ldc)
        var y0 = x0 + bias0, y1 = x1 + bias1, y2 = x2 + bias2
        if beta != 0 {
            y0 = y0.addingProduct(bv, p.loadUnaligned(as: V.self))
            y1 = y1.addingProduct(bv, p.loadUnaligned(fromByteOffset: 64, as: V.self))
            y2 = y2.addingProduct(bv, p.loadUnaligned(fromByteOffset: 128, as: V.self))
        }
        if relu {
            y0 = y0.replacing(with: zero, where: y0 .< zero); y1 = y1.replacing(with: zero, where: y1 .< zero)
            y2 = y2.replacing(with: zero, where: y2 .< zero)
        }
        p.storeBytes(of: y0, as: V.self)
        p.storeBytes(of: y1, toByteOffset: 64, as: V.self)
        p.storeBytes(of: y2, toByteOffset: 128, as: V.self)
    }
    store(0, c00, c01, c02)
    if rows > 1 { store(1, c10, c11, c12) }
    if rows > 2 { store(2, c20, c21, c22) }
    if rows > 3 { store(3, c30, c31, c32) }
    if rows > 4 { store(4, c40, c41, c42) }
    if rows > 5 { store(5, c50, c51, c52) }
}

/// Shared body of both 6×32 kernels; `a(k, i)` is A[i, k]. Inlined, so each caller gets its own addressing.
@inline(__always)
func microKernel6x32(
    _ kc: Int, _ a: (Int, Int) -> Float, _ b: UnsafePointer<Float>,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ beta: Float,
    _ bias: UnsafePointer<Float>?, _ relu: Bool, _ rows: Int, prefetch: UnsafeRawPointer?
) {
    typealias V = SIMD16<Float>
    var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V()
    var c30 = V(), c31 = V(), c40 = V(), c41 = V(), c50 = V(), c51 = V()
    var bp = UnsafeRawPointer(b)
    var k = 0
    // Streamed weights (`prefetch` = the panel to come): its row k is fetched at step k, so it arrives while this
    // panel computes (see `GemmEngine.macroKernel`). The test is loop-invariant.
    let next = prefetch ?? UnsafeRawPointer(b)
    while k < kc {
        if prefetch != nil { let p = next + k &* 128; dg_prefetch(p); dg_prefetch(p + 64) }
        let b0 = bp.loadUnaligned(as: V.self)
        let b1 = bp.loadUnaligned(fromByteOffset: 64, as: V.self)
        // Rows ≥ `rows` (an edge tile's missing rows) are skipped: loop-invariant, predictable branches that full
        // tiles measured no slower with (the loop is bound by its 12 FMAs).
        var s = V(repeating: a(k, 0)); c00 = c00.addingProduct(s, b0); c01 = c01.addingProduct(s, b1)
        if rows > 1 { s = V(repeating: a(k, 1)); c10 = c10.addingProduct(s, b0); c11 = c11.addingProduct(s, b1) }
        if rows > 2 { s = V(repeating: a(k, 2)); c20 = c20.addingProduct(s, b0); c21 = c21.addingProduct(s, b1) }
        if rows > 3 { s = V(repeating: a(k, 3)); c30 = c30.addingProduct(s, b0); c31 = c31.addingProduct(s, b1) }
        if rows > 4 { s = V(repeating: a(k, 4)); c40 = c40.addingProduct(s, b0); c41 = c41.addingProduct(s, b1) }
        if rows > 5 { s = V(repeating: a(k, 5)); c50 = c50.addingProduct(s, b0); c51 = c51.addingProduct(s, b1) }
        bp += 128; k &+= 1
    }
    let bv = V(repeating: beta)
    let bias0 = bias.map { UnsafeRawPointer($0).loadUnaligned(as: V.self) } ?? V()
    let bias1 = bias.map { UnsafeRawPointer($0).loadUnaligned(fromByteOffset: 64, as: V.self) } ?? V()
    let zero = V()
    @inline(__always) func store(_ row: Int, _ x0: V, _ x1: V) {
        let p = UnsafeMutableRawPointer(c + row * ldc)
        var y0 = x0 + bias0, y1 = x1 + bias1
        if beta != 0 {
            y0 = y0.addingProduct(bv, p.loadUnaligned(as: V.self))
            y1 = y1.addingProduct(bv, p.loadUnaligned(fromByteOffset: 64, as: V.self))
        }
        if relu { y0 = y0.replacing(with: zero, where: y0 .< zero); y1 = y1.replacing(with: zero, where: y1 .< zero) }
        p.storeBytes(of: y0, as: V.self)
        p.storeBytes(of: y1, toByteOffset: 64, as: V.self)
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
/// Batch-1 path: the shared body (DGKernelsSIMD) specialised for SIMD16<Float> and this target's ISA.
@inline(never)
public func sgemvRowsAVX512(
    _ n: Int, _ k: Int, _ w: UnsafePointer<Float>, _ ldw: Int, _ x: UnsafePointer<Float>,
    _ y: UnsafeMutablePointer<Float>, _ beta: Float, _ bias: UnsafePointer<Float>?, _ relu: Bool
) {
    sgemvRowsBody(SIMD16<Float>.self, n, k, w, ldw, x, y, beta, bias, relu)
}

/// Peak probe: `iters` steps of 16 independent zmm FMA chains; returns a value so nothing is elided.
/// FLOPs executed = iters × 16 chains × 16 lanes × 2.
@inline(never)
public func fmaPeakLoopAVX512(_ iters: Int, _ seed: Float) -> Float {
    typealias V = SIMD16<Float>
    let m = V(repeating: 0.5), a = V(repeating: seed)  // x ← a + x·m converges: no inf, no denormals
    var x0 = V(repeating: seed), x1 = x0 + 1, x2 = x0 + 2, x3 = x0 + 3, x4 = x0 + 4, x5 = x0 + 5
    var x6 = x0 + 6, x7 = x0 + 7, x8 = x0 + 8, x9 = x0 + 9, x10 = x0 + 10, x11 = x0 + 11
    var x12 = x0 + 12, x13 = x0 + 13, x14 = x0 + 14, x15 = x0 + 15
    for _ in 0..<iters {
        x0 = a.addingProduct(x0, m); x1 = a.addingProduct(x1, m); x2 = a.addingProduct(x2, m)
        x3 = a.addingProduct(x3, m); x4 = a.addingProduct(x4, m); x5 = a.addingProduct(x5, m)
        x6 = a.addingProduct(x6, m); x7 = a.addingProduct(x7, m); x8 = a.addingProduct(x8, m)
        x9 = a.addingProduct(x9, m); x10 = a.addingProduct(x10, m); x11 = a.addingProduct(x11, m)
        x12 = a.addingProduct(x12, m); x13 = a.addingProduct(x13, m); x14 = a.addingProduct(x14, m)
        x15 = a.addingProduct(x15, m)
    }
    let s = (x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7) + (x8 + x9 + x10 + x11 + x12 + x13 + x14 + x15)
    return s.sum()
}

/// One row of C against one packed B panel (kc × 32, k-major): y[0..<32] = x·panel (+beta·y, bias, relu).
/// The batch-1 kernel for pre-packed weights; four k-interleaved accumulator pairs hide FMA latency.
@inline(never)
public func sgemvPanelAVX512_32(
    _ kc: Int, _ x: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
    _ y: UnsafeMutablePointer<Float>, _ beta: Float, _ bias: UnsafePointer<Float>?, _ relu: Bool
) {
    typealias V = SIMD16<Float>
    var a0 = V(), a1 = V(), b0 = V(), b1 = V(), c0 = V(), c1 = V(), d0 = V(), d1 = V()
    let bp = UnsafeRawPointer(b)
    var k = 0
    while k + 4 <= kc {
        let o = k * 128
        var s = V(repeating: x[k])
        a0 = a0.addingProduct(s, bp.loadUnaligned(fromByteOffset: o, as: V.self))
        a1 = a1.addingProduct(s, bp.loadUnaligned(fromByteOffset: o + 64, as: V.self))
        s = V(repeating: x[k + 1])
        b0 = b0.addingProduct(s, bp.loadUnaligned(fromByteOffset: o + 128, as: V.self))
        b1 = b1.addingProduct(s, bp.loadUnaligned(fromByteOffset: o + 192, as: V.self))
        s = V(repeating: x[k + 2])
        c0 = c0.addingProduct(s, bp.loadUnaligned(fromByteOffset: o + 256, as: V.self))
        c1 = c1.addingProduct(s, bp.loadUnaligned(fromByteOffset: o + 320, as: V.self))
        s = V(repeating: x[k + 3])
        d0 = d0.addingProduct(s, bp.loadUnaligned(fromByteOffset: o + 384, as: V.self))
        d1 = d1.addingProduct(s, bp.loadUnaligned(fromByteOffset: o + 448, as: V.self))
        k += 4
    }
    while k < kc {
        let s = V(repeating: x[k])
        a0 = a0.addingProduct(s, bp.loadUnaligned(fromByteOffset: k * 128, as: V.self))
        a1 = a1.addingProduct(s, bp.loadUnaligned(fromByteOffset: k * 128 + 64, as: V.self))
        k += 1
    }
    var y0 = (a0 + b0) + (c0 + d0), y1 = (a1 + b1) + (c1 + d1)
    if let bias {
        y0 += UnsafeRawPointer(bias).loadUnaligned(as: V.self)
        y1 += UnsafeRawPointer(bias).loadUnaligned(fromByteOffset: 64, as: V.self)
    }
    let yp = UnsafeMutableRawPointer(y)
    if beta != 0 {
        y0 = y0.addingProduct(V(repeating: beta), yp.loadUnaligned(as: V.self))
        y1 = y1.addingProduct(V(repeating: beta), yp.loadUnaligned(fromByteOffset: 64, as: V.self))
    }
    if relu { y0 = y0.replacing(with: 0, where: y0 .< 0); y1 = y1.replacing(with: 0, where: y1 .< 0) }
    yp.storeBytes(of: y0, as: V.self)
    yp.storeBytes(of: y1, toByteOffset: 64, as: V.self)
}

/// Gathered-row gemv (unit masks at batch 1); see `sgemvIndexedBody` in DGKernelsSIMD.
@inline(never)
public func sgemvIndexedAVX512(
    _ n: Int, _ k: Int, _ w: UnsafePointer<Float>, _ ldw: Int, _ rows: UnsafePointer<Int32>, _ x: UnsafePointer<Float>,
    _ y: UnsafeMutablePointer<Float>, _ scatter: Bool, _ bias: UnsafePointer<Float>?, _ relu: Bool
) {
    sgemvIndexedBody(SIMD16<Float>.self, n, k, w, ldw, rows, x, y, scatter, bias, relu)
}

/// Gathered-row gemv for a few samples at once (4 rows × 4 samples of zmm dot products); see `sgemvIndexedMultiBody`.
@inline(never)
public func sgemvIndexedMultiAVX512(
    _ n: Int, _ k: Int, _ w: UnsafePointer<Float>, _ ldw: Int, _ rows: UnsafePointer<Int32>, _ m: Int,
    _ x: UnsafePointer<Float>, _ ldx: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ scatter: Bool,
    _ bias: UnsafePointer<Float>?, _ relu: Bool
) {
    sgemvIndexedMultiBody(SIMD16<Float>.self, n, k, w, ldw, rows, m, x, ldx, y, ldy, scatter, bias, relu, wide: true)
}

/// Unit-major dot products (per-sample masks, narrow gates: rows × their users); see `sgemvRowSamplesBody`.
@inline(never)
public func sgemvRowSamplesAVX512(
    _ rows: Int, _ n: Int, _ k: Int, _ w: UnsafePointer<Float>, _ ldw: Int, _ samples: UnsafePointer<Int32>,
    _ x: UnsafePointer<Float>, _ ldx: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int,
    _ bias: UnsafePointer<Float>?, _ relu: Bool
) {
    sgemvRowSamplesBody(SIMD16<Float>.self, rows, n, k, w, ldw, samples, x, ldx, y, ldy, bias, relu)
}
