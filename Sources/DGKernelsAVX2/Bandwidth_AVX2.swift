import DGKernelsSIMD

/// STREAM-style bandwidth loops for this target's ISA (see MachineLimits in DGKernels): the shared bodies in
/// DGKernelsSIMD, specialised here for SIMD8<Float> and compiled with this target's -march.
/// Arrays must be 64-byte aligned and hold `n` floats; the tail beyond four vectors is scalar.

/// dst[i] = src[i] (STREAM copy: 8 bytes moved per element).
@inline(never)
public func streamCopyAVX2(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
    streamCopyBody(SIMD8<Float>.self, dst, src, n)
}

/// a[i] = b[i] + s·c[i] (STREAM triad: 12 bytes moved per element).
@inline(never)
public func streamTriadAVX2(_ a: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafePointer<Float>,
                          _ scalar: Float, _ n: Int) {
    streamTriadBody(SIMD8<Float>.self, a, b, c, scalar, n)
}

/// Σ x[i] with four independent accumulators (read-only bandwidth: 4 bytes per element).
@inline(never)
public func streamSumAVX2(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    streamSumBody(SIMD8<Float>.self, x, n)
}
