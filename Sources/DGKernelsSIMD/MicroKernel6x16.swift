import CKernelHints

// The 6×16 tile body shared by the AVX2 micro-kernels and AVX-512's half-panel kernel. `@inlinable`: each ISA
// target specialises it with its own -march (this target is baseline x86-64 and never runs it).

/// The A side of a row-source micro-kernel: six row pointers read in place (`element(k, i)` = A[i, k]).
public struct SixRowPointers {
    public let r0: UnsafePointer<Float>, r1: UnsafePointer<Float>, r2: UnsafePointer<Float>
    public let r3: UnsafePointer<Float>, r4: UnsafePointer<Float>, r5: UnsafePointer<Float>

    @inlinable @inline(__always)
    public init(_ a: UnsafePointer<UnsafePointer<Float>>) {
        r0 = a[0]; r1 = a[1]; r2 = a[2]; r3 = a[3]; r4 = a[4]; r5 = a[5]
    }

    @inlinable @inline(__always)
    public func element(_ k: Int, _ i: Int) -> Float {
        switch i { case 0: r0[k]; case 1: r1[k]; case 2: r2[k]; case 3: r3[k]; case 4: r4[k]; default: r5[k] }
    }
}

/// Rows ≥ `rows` are skipped in the k loop (edge tiles cost their rows, not six); the per-row branches are
/// loop-invariant and predictable, and full tiles measured no slower with them.
/// A 6×16 register tile (one SIMD16 accumulator per row: two ymm on AVX2, one zmm on AVX-512); `a(k, i)` is A[i, k],
/// B row k is 16 floats at `b + k·bStride` (16 for a packed 16-wide panel; 32 for one half of a 32-wide
/// pre-packed panel, which is how AVX-512 runs 16-unit blocks without padding them to 32).
@inlinable @inline(__always)
public func microKernel6x16(
    _ kc: Int, _ a: (Int, Int) -> Float, _ b: UnsafePointer<Float>, _ bStride: Int,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ beta: Float,
    _ bias: UnsafePointer<Float>?, _ relu: Bool, _ rows: Int, twoChains: Bool = false, prefetch: UnsafeRawPointer? = nil
) {
    // One SIMD16 accumulator per row (two ymm after legalisation). Written per row so that each
    // broadcast dies right after its two FMAs: with two separate SIMD8 columns LLVM grouped the FMAs by
    // column, kept six broadcasts live and spilled accumulators (16 ymm registers only).
    typealias V = SIMD8<Float>
    typealias W = SIMD16<Float>
    var r0 = W(), r1 = W(), r2 = W(), r3 = W(), r4 = W(), r5 = W()
    var bp = UnsafeRawPointer(b)
    var k = 0
    // Streamed weights (`prefetch` = the panel to come): its row k is fetched at step k (see `microKernel6x32`).
    let next = prefetch ?? UnsafeRawPointer(b), rowBytes = bStride &* 4
    if twoChains {
        // One zmm per row is six FMA chains, fewer than the two FMA pipes × 4-cycle latency need: even and odd k
        // accumulate separately (twelve chains) and meet at the end. Only for 32-register ISAs.
        var s0 = W(), s1 = W(), s2 = W(), s3 = W(), s4 = W(), s5 = W()
        let step = bStride &* 4
        while k &+ 1 < kc {
            if prefetch != nil { dg_prefetch(next + k &* rowBytes); dg_prefetch(next + (k &+ 1) &* rowBytes) }
            let b0 = bp.loadUnaligned(as: W.self), b1 = bp.loadUnaligned(fromByteOffset: step, as: W.self)
            let k1 = k &+ 1
            r0 = r0.addingProduct(W(repeating: a(k, 0)), b0); s0 = s0.addingProduct(W(repeating: a(k1, 0)), b1)
            if rows > 1 { r1 = r1.addingProduct(W(repeating: a(k, 1)), b0); s1 = s1.addingProduct(W(repeating: a(k1, 1)), b1) }
            if rows > 2 { r2 = r2.addingProduct(W(repeating: a(k, 2)), b0); s2 = s2.addingProduct(W(repeating: a(k1, 2)), b1) }
            if rows > 3 { r3 = r3.addingProduct(W(repeating: a(k, 3)), b0); s3 = s3.addingProduct(W(repeating: a(k1, 3)), b1) }
            if rows > 4 { r4 = r4.addingProduct(W(repeating: a(k, 4)), b0); s4 = s4.addingProduct(W(repeating: a(k1, 4)), b1) }
            if rows > 5 { r5 = r5.addingProduct(W(repeating: a(k, 5)), b0); s5 = s5.addingProduct(W(repeating: a(k1, 5)), b1) }
            bp += 2 &* step; k &+= 2
        }
        r0 += s0; r1 += s1; r2 += s2; r3 += s3; r4 += s4; r5 += s5
    }
    while k < kc {
        if prefetch != nil { dg_prefetch(next + k &* rowBytes) }
        let bw = bp.loadUnaligned(as: W.self)
        r0 = r0.addingProduct(W(repeating: a(k, 0)), bw)
        if rows > 1 { r1 = r1.addingProduct(W(repeating: a(k, 1)), bw) }
        if rows > 2 { r2 = r2.addingProduct(W(repeating: a(k, 2)), bw) }
        if rows > 3 { r3 = r3.addingProduct(W(repeating: a(k, 3)), bw) }
        if rows > 4 { r4 = r4.addingProduct(W(repeating: a(k, 4)), bw) }
        if rows > 5 { r5 = r5.addingProduct(W(repeating: a(k, 5)), bw) }
        bp += bStride &* 4; k &+= 1
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

