// Width-generic bodies of the loops that every ISA target needs in the same shape: the row gemv and the
// STREAM bandwidth loops. They are `@inlinable` and `@inline(__always)`, so each ISA target (compiled with its
// own -march) specialises them for its SIMD width and emits its own instructions; this target itself is
// baseline x86-64 and never runs them. The micro-kernels and FMA-peak loops stay per ISA on purpose
// (register budgets differ: 32 zmm vs 16 ymm).

/// dst[i] = src[i] (STREAM copy: 8 bytes moved per element); four vectors per step, scalar tail.
@inlinable @inline(__always)
public func streamCopyBody<V: SIMD>(_: V.Type, _ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int)
where V.Scalar == Float {
    let w = V.scalarCount, step = 4 * w
    let s = UnsafeRawPointer(src), d = UnsafeMutableRawPointer(dst)
    var i = 0
    while i + step <= n {
        let o = i * 4
        let v0 = s.load(fromByteOffset: o, as: V.self), v1 = s.load(fromByteOffset: o + 4 * w, as: V.self)
        let v2 = s.load(fromByteOffset: o + 8 * w, as: V.self), v3 = s.load(fromByteOffset: o + 12 * w, as: V.self)
        d.storeBytes(of: v0, toByteOffset: o, as: V.self); d.storeBytes(of: v1, toByteOffset: o + 4 * w, as: V.self)
        d.storeBytes(of: v2, toByteOffset: o + 8 * w, as: V.self); d.storeBytes(of: v3, toByteOffset: o + 12 * w, as: V.self)
        i += step
    }
    while i < n { dst[i] = src[i]; i += 1 }
}

/// a[i] = b[i] + s·c[i] (STREAM triad: 12 bytes moved per element).
@inlinable @inline(__always)
public func streamTriadBody<V: SIMD>(_: V.Type, _ a: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>,
                                     _ c: UnsafePointer<Float>, _ scalar: Float, _ n: Int) where V.Scalar == Float {
    let w = V.scalarCount, step = 4 * w
    let pb = UnsafeRawPointer(b), pc = UnsafeRawPointer(c), pa = UnsafeMutableRawPointer(a)
    let sv = V(repeating: scalar)
    var i = 0
    while i + step <= n {
        let o = i * 4
        for u in 0..<4 {
            let off = o + u * 4 * w
            let r = pb.load(fromByteOffset: off, as: V.self).addingProduct(sv, pc.load(fromByteOffset: off, as: V.self))
            pa.storeBytes(of: r, toByteOffset: off, as: V.self)
        }
        i += step
    }
    while i < n { a[i] = b[i] + scalar * c[i]; i += 1 }
}

/// Σ x[i] with four independent accumulators (read-only bandwidth: 4 bytes per element).
@inlinable @inline(__always)
public func streamSumBody<V: SIMD>(_: V.Type, _ x: UnsafePointer<Float>, _ n: Int) -> Float where V.Scalar == Float {
    let w = V.scalarCount, step = 4 * w
    let p = UnsafeRawPointer(x)
    var a0 = V(), a1 = V(), a2 = V(), a3 = V()
    var i = 0
    while i + step <= n {
        let o = i * 4
        a0 += p.load(fromByteOffset: o, as: V.self); a1 += p.load(fromByteOffset: o + 4 * w, as: V.self)
        a2 += p.load(fromByteOffset: o + 8 * w, as: V.self); a3 += p.load(fromByteOffset: o + 12 * w, as: V.self)
        i += step
    }
    var s = ((a0 + a1) + (a2 + a3)).sum()
    while i < n { s += x[i]; i += 1 }
    return s
}

/// The shared core of both gemv kernels: for i in 0..<n, `store(i, dot(row(i)[0..<k], x))`, four rows at a
/// time so each x vector is reused four times (the batch-1 path is memory bound). `row` and `store` are
/// inlined closures, so the row addressing and the epilogue cost nothing extra.
@inlinable @inline(__always)
public func gemvFourRows<V: SIMD>(
    _: V.Type, _ n: Int, _ k: Int, _ x: UnsafePointer<Float>,
    row: (Int) -> UnsafePointer<Float>, store: (Int, Float) -> Void
) where V.Scalar == Float {
    let width = V.scalarCount
    let kv = k - k % width
    let xr = UnsafeRawPointer(x)
    var i = 0
    while i + 4 <= n {
        let p0 = row(i), p1 = row(i + 1), p2 = row(i + 2), p3 = row(i + 3)
        let r0 = UnsafeRawPointer(p0), r1 = UnsafeRawPointer(p1), r2 = UnsafeRawPointer(p2), r3 = UnsafeRawPointer(p3)
        var a0 = V(), a1 = V(), a2 = V(), a3 = V()
        var j = 0
        while j < kv {
            let xv = xr.loadUnaligned(fromByteOffset: j * 4, as: V.self)
            a0 = a0.addingProduct(r0.loadUnaligned(fromByteOffset: j * 4, as: V.self), xv)
            a1 = a1.addingProduct(r1.loadUnaligned(fromByteOffset: j * 4, as: V.self), xv)
            a2 = a2.addingProduct(r2.loadUnaligned(fromByteOffset: j * 4, as: V.self), xv)
            a3 = a3.addingProduct(r3.loadUnaligned(fromByteOffset: j * 4, as: V.self), xv)
            j += width
        }
        let sums = sums4(a0, a1, a2, a3)  // one inline reduction, not four stdlib calls
        var s0 = sums[0], s1 = sums[1], s2 = sums[2], s3 = sums[3]
        while j < k {
            let xv = x[j]
            s0 += p0[j] * xv; s1 += p1[j] * xv; s2 += p2[j] * xv; s3 += p3[j] * xv
            j += 1
        }
        store(i, s0); store(i + 1, s1); store(i + 2, s2); store(i + 3, s3)
        i += 4
    }
    while i < n {
        let p0 = row(i)
        let r0 = UnsafeRawPointer(p0)
        var a0 = V()
        var j = 0
        while j < kv {
            a0 = a0.addingProduct(r0.loadUnaligned(fromByteOffset: j * 4, as: V.self),
                                  xr.loadUnaligned(fromByteOffset: j * 4, as: V.self))
            j += width
        }
        var s0 = a0.sum()
        while j < k { s0 += p0[j] * x[j]; j += 1 }
        store(i, s0)
        i += 1
    }
}

/// y[i] = dot(W[i, 0..<k], x) (+ beta·y[i]) (+ bias[i]) (relu) for i in 0..<n; W row-major with `ldw`.
@inlinable @inline(__always)
public func sgemvRowsBody<V: SIMD>(
    _ v: V.Type, _ n: Int, _ k: Int, _ w: UnsafePointer<Float>, _ ldw: Int, _ x: UnsafePointer<Float>,
    _ y: UnsafeMutablePointer<Float>, _ beta: Float, _ bias: UnsafePointer<Float>?, _ relu: Bool
) where V.Scalar == Float {
    gemvFourRows(v, n, k, x, row: { w + $0 * ldw }) { i, s in
        var t = s + (bias?[i] ?? 0)
        if beta != 0 { t += beta * y[i] }
        if relu && t < 0 { t = 0 }
        y[i] = t
    }
}

/// Gathered rows: y[o(i)] = dot(W[rows[i], 0..<k], x) (+ bias[rows[i]]) (relu) for i in 0..<n, where o(i) = rows[i]
/// when `scatter`, else i. Same four-row core, so a unit mask with short runs still reuses each x vector four
/// times (one-row calls per run were 2× slower than the dense gemv here).
@inlinable @inline(__always)
public func sgemvIndexedBody<V: SIMD>(
    _ v: V.Type, _ n: Int, _ k: Int, _ w: UnsafePointer<Float>, _ ldw: Int, _ rows: UnsafePointer<Int32>,
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ scatter: Bool, _ bias: UnsafePointer<Float>?, _ relu: Bool
) where V.Scalar == Float {
    gemvFourRows(v, n, k, x, row: { w + Int(rows[$0]) * ldw }) { i, s in
        let u = Int(rows[i])
        var t = s + (bias?[u] ?? 0)
        if relu && t < 0 { t = 0 }
        y[scatter ? u : i] = t
    }
}
