/// STREAM-style bandwidth loops compiled for this target's ISA (see MachineLimits in DGKernels).
/// Arrays must be 64-byte aligned and hold `n` floats; the tail beyond a multiple of 32 is scalar.

/// dst[i] = src[i] (STREAM copy: 8 bytes moved per element).
@inline(never)
public func streamCopyAVX2(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
    typealias V = SIMD8<Float>
    let w = 8, step = 4 * w
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
@inline(never)
public func streamTriadAVX2(_ a: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafePointer<Float>,
                          _ scalar: Float, _ n: Int) {
    typealias V = SIMD8<Float>
    let w = 8, step = 4 * w
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
@inline(never)
public func streamSumAVX2(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    typealias V = SIMD8<Float>
    let w = 8, step = 4 * w
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
