// Gathered-row gemv for a few samples at once (shared masks at batch 2 … 16): four weight rows stay in registers'
// reach (L1) while every sample's vector streams past them, so W is read once for the whole batch — the batch-1
// gathered gemv called per sample would stream it once per sample, and a packed GEMM would pad 2 rows to 6 and
// re-pack the active rows of W on every call. Dot-product form (vectorised along k, one horizontal sum per
// output at the end).

/// y[s·ldy + o(i)] = act(dot(W[rows[i], 0..<k], x[s·ldx, 0..<k]) + bias[rows[i]]) for i < n, s < m, where
/// o(i) = rows[i] when `scatter`, else i. `wide`: 4 samples per register tile (32 registers), else 2 (16 registers).
@inlinable @inline(__always)
public func sgemvIndexedMultiBody<V: SIMD>(
    _ v: V.Type, _ n: Int, _ k: Int, _ w: UnsafePointer<Float>, _ ldw: Int, _ rows: UnsafePointer<Int32>,
    _ m: Int, _ x: UnsafePointer<Float>, _ ldx: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int,
    _ scatter: Bool, _ bias: UnsafePointer<Float>?, _ relu: Bool, wide: Bool
) where V.Scalar == Float {
    let tileSamples = wide ? 4 : 2
    var i = 0
    while i < n {
        let rn = min(4, n - i)
        // An edge group repeats its last row; the extra sums are never stored.
        let w0 = w + Int(rows[i]) * ldw, w1 = w + Int(rows[i + min(1, rn - 1)]) * ldw
        let w2 = w + Int(rows[i + min(2, rn - 1)]) * ldw, w3 = w + Int(rows[i + min(3, rn - 1)]) * ldw
        var s0 = 0
        while s0 < m {
            let sn = min(tileSamples, m - s0)
            let x0 = x + s0 * ldx, x1 = x + (s0 + min(1, sn - 1)) * ldx
            let sums: (SIMD4<Float>, SIMD4<Float>, SIMD4<Float>, SIMD4<Float>)
            if wide {
                let x2 = x + (s0 + min(2, sn - 1)) * ldx, x3 = x + (s0 + min(3, sn - 1)) * ldx
                sums = dotTile4x4(v, k, w0, w1, w2, w3, x0, x1, x2, x3)
            } else {
                sums = dotTile4x2(v, k, w0, w1, w2, w3, x0, x1)
            }
            for r in 0..<rn {
                let s = r == 0 ? sums.0 : r == 1 ? sums.1 : r == 2 ? sums.2 : sums.3
                let u = Int(rows[i + r])
                let b = bias?[u] ?? 0
                let col = scatter ? u : i + r
                for t in 0..<sn {
                    var value = s[t] + b
                    if relu && value < 0 { value = 0 }
                    y[(s0 + t) * ldy + col] = value
                }
            }
            s0 += tileSamples
        }
        i += 4
    }
}

/// Sums of four vectors as one SIMD4 (a horizontal reduction of each): each folded to four lanes with vector adds,
/// then one 4 × 4 transpose-add. (`SIMD.sum()` is an out-of-line stdlib call per vector — with a vzeroupper and
/// a spill each — which cost the 6 × 4 dot tile a third of its time.)
@inlinable @inline(__always)
public func sums4<V: SIMD>(_ a: V, _ b: V, _ c: V, _ d: V) -> SIMD4<Float> where V.Scalar == Float {
    @inline(__always) func fold(_ v: V) -> SIMD4<Float> {
        var s = SIMD4(v[0], v[1], v[2], v[3])
        var i = 4
        while i < V.scalarCount { s += SIMD4(v[i], v[i + 1], v[i + 2], v[i + 3]); i += 4 }
        return s
    }
    let a4 = fold(a), b4 = fold(b), c4 = fold(c), d4 = fold(d)
    return (SIMD4(a4[0], b4[0], c4[0], d4[0]) + SIMD4(a4[1], b4[1], c4[1], d4[1]))
        + (SIMD4(a4[2], b4[2], c4[2], d4[2]) + SIMD4(a4[3], b4[3], c4[3], d4[3]))
}

/// Dots of 4 rows (w0…w3) with 4 vectors (x0…x3) over k: 16 accumulators + 4 row vectors + 1 sample vector = 21
/// registers. Returns one SIMD4 per row (its dots with x0…x3).
@inlinable @inline(__always)
public func dotTile4x4<V: SIMD>(
    _: V.Type, _ k: Int, _ w0: UnsafePointer<Float>, _ w1: UnsafePointer<Float>, _ w2: UnsafePointer<Float>,
    _ w3: UnsafePointer<Float>, _ x0: UnsafePointer<Float>, _ x1: UnsafePointer<Float>, _ x2: UnsafePointer<Float>,
    _ x3: UnsafePointer<Float>
) -> (SIMD4<Float>, SIMD4<Float>, SIMD4<Float>, SIMD4<Float>) where V.Scalar == Float {
    let width = V.scalarCount
    let kv = k - k % width
    let r0 = UnsafeRawPointer(w0), r1 = UnsafeRawPointer(w1), r2 = UnsafeRawPointer(w2), r3 = UnsafeRawPointer(w3)
    let q0 = UnsafeRawPointer(x0), q1 = UnsafeRawPointer(x1), q2 = UnsafeRawPointer(x2), q3 = UnsafeRawPointer(x3)
    var c00 = V(), c01 = V(), c02 = V(), c03 = V(), c10 = V(), c11 = V(), c12 = V(), c13 = V()
    var c20 = V(), c21 = V(), c22 = V(), c23 = V(), c30 = V(), c31 = V(), c32 = V(), c33 = V()
    var o = 0
    let end = kv * 4
    while o < end {
        let a0 = r0.loadUnaligned(fromByteOffset: o, as: V.self), a1 = r1.loadUnaligned(fromByteOffset: o, as: V.self)
        let a2 = r2.loadUnaligned(fromByteOffset: o, as: V.self), a3 = r3.loadUnaligned(fromByteOffset: o, as: V.self)
        var s = q0.loadUnaligned(fromByteOffset: o, as: V.self)
        c00 = c00.addingProduct(a0, s); c10 = c10.addingProduct(a1, s); c20 = c20.addingProduct(a2, s); c30 = c30.addingProduct(a3, s)
        s = q1.loadUnaligned(fromByteOffset: o, as: V.self)
        c01 = c01.addingProduct(a0, s); c11 = c11.addingProduct(a1, s); c21 = c21.addingProduct(a2, s); c31 = c31.addingProduct(a3, s)
        s = q2.loadUnaligned(fromByteOffset: o, as: V.self)
        c02 = c02.addingProduct(a0, s); c12 = c12.addingProduct(a1, s); c22 = c22.addingProduct(a2, s); c32 = c32.addingProduct(a3, s)
        s = q3.loadUnaligned(fromByteOffset: o, as: V.self)
        c03 = c03.addingProduct(a0, s); c13 = c13.addingProduct(a1, s); c23 = c23.addingProduct(a2, s); c33 = c33.addingProduct(a3, s)
        o += width * 4
    }
    var t0 = sums4(c00, c01, c02, c03), t1 = sums4(c10, c11, c12, c13)
    var t2 = sums4(c20, c21, c22, c23), t3 = sums4(c30, c31, c32, c33)
    var j = kv
    while j < k {
        let xs = SIMD4(x0[j], x1[j], x2[j], x3[j])
        t0 += w0[j] * xs; t1 += w1[j] * xs; t2 += w2[j] * xs; t3 += w3[j] * xs
        j += 1
    }
    return (t0, t1, t2, t3)
}

/// Dots of 4 rows with 2 vectors (8 accumulators + 4 + 1 = 13 registers, for 16-register ISAs); lanes 2–3 are 0.
@inlinable @inline(__always)
public func dotTile4x2<V: SIMD>(
    _: V.Type, _ k: Int, _ w0: UnsafePointer<Float>, _ w1: UnsafePointer<Float>, _ w2: UnsafePointer<Float>,
    _ w3: UnsafePointer<Float>, _ x0: UnsafePointer<Float>, _ x1: UnsafePointer<Float>
) -> (SIMD4<Float>, SIMD4<Float>, SIMD4<Float>, SIMD4<Float>) where V.Scalar == Float {
    let width = V.scalarCount
    let kv = k - k % width
    let r0 = UnsafeRawPointer(w0), r1 = UnsafeRawPointer(w1), r2 = UnsafeRawPointer(w2), r3 = UnsafeRawPointer(w3)
    let q0 = UnsafeRawPointer(x0), q1 = UnsafeRawPointer(x1)
    var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V(), c30 = V(), c31 = V()
    var o = 0
    let end = kv * 4
    while o < end {
        let a0 = r0.loadUnaligned(fromByteOffset: o, as: V.self), a1 = r1.loadUnaligned(fromByteOffset: o, as: V.self)
        let a2 = r2.loadUnaligned(fromByteOffset: o, as: V.self), a3 = r3.loadUnaligned(fromByteOffset: o, as: V.self)
        var s = q0.loadUnaligned(fromByteOffset: o, as: V.self)
        c00 = c00.addingProduct(a0, s); c10 = c10.addingProduct(a1, s); c20 = c20.addingProduct(a2, s); c30 = c30.addingProduct(a3, s)
        s = q1.loadUnaligned(fromByteOffset: o, as: V.self)
        c01 = c01.addingProduct(a0, s); c11 = c11.addingProduct(a1, s); c21 = c21.addingProduct(a2, s); c31 = c31.addingProduct(a3, s)
        o += width * 4
    }
    var t0 = SIMD4(c00.sum(), c01.sum(), 0, 0), t1 = SIMD4(c10.sum(), c11.sum(), 0, 0)
    var t2 = SIMD4(c20.sum(), c21.sum(), 0, 0), t3 = SIMD4(c30.sum(), c31.sum(), 0, 0)
    var j = kv
    while j < k {
        let xs = SIMD4(x0[j], x1[j], 0, 0)
        t0 += w0[j] * xs; t1 += w1[j] * xs; t2 += w2[j] * xs; t3 += w3[j] * xs
        j += 1
    }
    return (t0, t1, t2, t3)
}
