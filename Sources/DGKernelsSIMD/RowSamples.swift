// Unit-major dot products for per-sample masks with narrow gates: each weight row is dotted with just the samples
// whose mask turns its unit on. A GEMM over those samples pads them to MR rows and the units to NR columns — with
// unit gates at r ≈ 0.1 and B = 32 a unit has ~3 users, and a 6 × 32 tile would compute 60× the useful MACs.
// Random unit masks leave no dense sub-tile to exploit, so every MAC needs a fresh vector of x or of W: one W vector
// is shared by up to four samples, one x vector load per FMA. With x in L2 that runs at ~30 GMAC/s on Zen 5 against
// ~120 for the GEMM (measured), still 1.4–2.8× the dense-then-mask layer at r ≤ 0.25.

/// y[samples[i]·ldy + r] = act(dot(W[r, 0..<k], x[samples[i], 0..<k]) + bias[r]) for r < rows, i < n.
/// Samples go four at a time (all rows of a tile while its four x rows are in L1), a remainder of 1–3 with its own
/// accumulator layout (8 chains either way, so no FMA waits on the previous one).
@inlinable @inline(__always)
public func sgemvRowSamplesBody<V: SIMD>(
    _ v: V.Type, _ rows: Int, _ n: Int, _ k: Int, _ w: UnsafePointer<Float>, _ ldw: Int, _ samples: UnsafePointer<Int32>,
    _ x: UnsafePointer<Float>, _ ldx: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int,
    _ bias: UnsafePointer<Float>?, _ relu: Bool
) where V.Scalar == Float {
    var i = 0
    while i < n {
        let c = min(4, n - i)
        // A short tile repeats its last sample; those sums are never stored.
        let q0 = UnsafeRawPointer(x + Int(samples[i]) * ldx)
        let q1 = UnsafeRawPointer(x + Int(samples[i + min(1, c - 1)]) * ldx)
        let q2 = UnsafeRawPointer(x + Int(samples[i + min(2, c - 1)]) * ldx)
        let q3 = UnsafeRawPointer(x + Int(samples[i + min(3, c - 1)]) * ldx)
        for r in 0..<rows {
            let wr = UnsafeRawPointer(w + r * ldw)
            let s: SIMD4<Float>
            switch c {
            case 4: s = rowSamplesTile(v, 4, k, wr, q0, q1, q2, q3)
            case 3: s = rowSamplesTile(v, 3, k, wr, q0, q1, q2, q3)
            case 2: s = rowSamplesTile(v, 2, k, wr, q0, q1, q2, q3)
            default: s = rowSamplesTile(v, 1, k, wr, q0, q1, q2, q3)
            }
            let b = bias?[r] ?? 0
            for t in 0..<c {
                var value = s[t] + b
                if relu && value < 0 { value = 0 }
                y[Int(samples[i + t]) * ldy + r] = value
            }
        }
        i += 4
    }
}

/// Dots of one row `w` with the first `count` (1…4, a constant after inlining) of q0…q3 over k; lane t of the
/// result is the dot with q_t. Three or four samples: two accumulators each over pairs of vectors; one or two:
/// four each over quads, so there are always ~8 independent FMA chains.
@inlinable @inline(__always)
public func rowSamplesTile<V: SIMD>(
    _: V.Type, _ count: Int, _ k: Int, _ w: UnsafeRawPointer, _ q0: UnsafeRawPointer, _ q1: UnsafeRawPointer,
    _ q2: UnsafeRawPointer, _ q3: UnsafeRawPointer
) -> SIMD4<Float> where V.Scalar == Float {
    @inline(__always) func ld(_ p: UnsafeRawPointer, _ o: Int) -> V { p.loadUnaligned(fromByteOffset: o, as: V.self) }
    let vb = V.scalarCount * 4  // bytes per vector
    var a0 = V(), a1 = V(), a2 = V(), a3 = V(), b0 = V(), b1 = V(), b2 = V(), b3 = V()
    var c0 = V(), c1 = V(), d0 = V(), d1 = V()
    let bytes = k / V.scalarCount * vb
    var o = 0
    if count >= 3 {
        while o + 2 * vb <= bytes {
            let wa = ld(w, o), wb = ld(w, o + vb)
            a0 = a0.addingProduct(wa, ld(q0, o)); a1 = a1.addingProduct(wa, ld(q1, o)); a2 = a2.addingProduct(wa, ld(q2, o))
            if count > 3 { a3 = a3.addingProduct(wa, ld(q3, o)) }
            b0 = b0.addingProduct(wb, ld(q0, o + vb)); b1 = b1.addingProduct(wb, ld(q1, o + vb))
            b2 = b2.addingProduct(wb, ld(q2, o + vb))
            if count > 3 { b3 = b3.addingProduct(wb, ld(q3, o + vb)) }
            o += 2 * vb
        }
    } else {
        while o + 4 * vb <= bytes {
            let wa = ld(w, o), wb = ld(w, o + vb), wc = ld(w, o + 2 * vb), wd = ld(w, o + 3 * vb)
            a0 = a0.addingProduct(wa, ld(q0, o)); b0 = b0.addingProduct(wb, ld(q0, o + vb))
            c0 = c0.addingProduct(wc, ld(q0, o + 2 * vb)); d0 = d0.addingProduct(wd, ld(q0, o + 3 * vb))
            if count > 1 {
                a1 = a1.addingProduct(wa, ld(q1, o)); b1 = b1.addingProduct(wb, ld(q1, o + vb))
                c1 = c1.addingProduct(wc, ld(q1, o + 2 * vb)); d1 = d1.addingProduct(wd, ld(q1, o + 3 * vb))
            }
            o += 4 * vb
        }
    }
    while o < bytes {
        let wa = ld(w, o)
        a0 = a0.addingProduct(wa, ld(q0, o))
        if count > 1 { a1 = a1.addingProduct(wa, ld(q1, o)) }
        if count > 2 { a2 = a2.addingProduct(wa, ld(q2, o)) }
        if count > 3 { a3 = a3.addingProduct(wa, ld(q3, o)) }
        o += vb
    }
    var s = sums4((a0 + b0) + (c0 + d0), (a1 + b1) + (c1 + d1), a2 + b2, a3 + b3)
    var j = bytes / 4
    while j < k {
        let o = 4 * j
        s += w.load(fromByteOffset: o, as: Float.self)
            * SIMD4(q0.load(fromByteOffset: o, as: Float.self), q1.load(fromByteOffset: o, as: Float.self),
                    q2.load(fromByteOffset: o, as: Float.self), q3.load(fromByteOffset: o, as: Float.self))
        j += 1
    }
    return s
}
