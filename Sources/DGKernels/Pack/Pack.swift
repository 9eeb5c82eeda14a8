/// Packing: copies a block of an operand into the micro-kernel's panel layout, applying index maps.
///
/// A block (rows i0..<i0+mc, k p0..<p0+kc) → ceil(mc/MR) panels, each kc × MR floats, k-major.
/// B block (k p0..<p0+kc, cols j0..<j0+nc) → ceil(nc/NR) panels, each kc × NR floats, k-major.
/// Rows/columns past the edge are zero-filled so the micro-kernel always runs full tiles.
/// Cost is O(mc·kc) / O(kc·nc): only gathered rows and columns are touched.
/// Zeros that edge panels read in place of missing rows (never written).
nonisolated(unsafe) let zeroRow: UnsafeMutablePointer<Float> = {
    let p = UnsafeMutablePointer<Float>.allocate(capacity: zeroRowLength)
    p.initialize(repeating: 0, count: zeroRowLength)
    return p
}()
let zeroRowLength = 4096

enum Pack {
    /// Packs `panels` consecutive A panels starting at panel `firstPanel` of the block.
    static func packA(_ a: MatrixOperand, i0: Int, mc: Int, p0: Int, kc: Int, mr: Int,
                      into dst: UnsafeMutablePointer<Float>) {
        let panels = (mc + mr - 1) / mr
        for p in 0..<panels {
            let rows = min(mr, mc - p * mr)
            let out = dst + p * kc * mr
            if a.colStride == 1 && a.colIndex == nil && mr == 6 && (rows == 6 || kc <= zeroRowLength) {
                // Fast path: six contiguous rows, interleaved into k-major order. An edge panel reads its missing
                // rows from a zero row (a gathered expert's 8 tokens are a 6-row and a 2-row panel; the scalar
                // path below made packing a quarter of a small MoE call).
                @inline(__always) func row(_ i: Int) -> UnsafePointer<Float> {
                    i < rows ? a.base + a.physicalRow(i0 + p * 6 + i) * a.rowStride + p0 : UnsafePointer(zeroRow)
                }
                let r0 = row(0), r1 = row(1), r2 = row(2), r3 = row(3), r4 = row(4), r5 = row(5)
                // Four k at a time: six SIMD4 loads, transposed into six SIMD4 stores of k-major output.
                var o = UnsafeMutableRawPointer(out)
                var k = 0
                while k + 4 <= kc {
                    let a0 = UnsafeRawPointer(r0 + k).loadUnaligned(as: SIMD4<Float>.self)
                    let a1 = UnsafeRawPointer(r1 + k).loadUnaligned(as: SIMD4<Float>.self)
                    let a2 = UnsafeRawPointer(r2 + k).loadUnaligned(as: SIMD4<Float>.self)
                    let a3 = UnsafeRawPointer(r3 + k).loadUnaligned(as: SIMD4<Float>.self)
                    let a4 = UnsafeRawPointer(r4 + k).loadUnaligned(as: SIMD4<Float>.self)
                    let a5 = UnsafeRawPointer(r5 + k).loadUnaligned(as: SIMD4<Float>.self)
                    o.storeBytes(of: SIMD4(a0[0], a1[0], a2[0], a3[0]), as: SIMD4<Float>.self)
                    o.storeBytes(of: SIMD4(a4[0], a5[0], a0[1], a1[1]), toByteOffset: 16, as: SIMD4<Float>.self)
                    o.storeBytes(of: SIMD4(a2[1], a3[1], a4[1], a5[1]), toByteOffset: 32, as: SIMD4<Float>.self)
                    o.storeBytes(of: SIMD4(a0[2], a1[2], a2[2], a3[2]), toByteOffset: 48, as: SIMD4<Float>.self)
                    o.storeBytes(of: SIMD4(a4[2], a5[2], a0[3], a1[3]), toByteOffset: 64, as: SIMD4<Float>.self)
                    o.storeBytes(of: SIMD4(a2[3], a3[3], a4[3], a5[3]), toByteOffset: 80, as: SIMD4<Float>.self)
                    o += 96; k += 4
                }
                var q = o.assumingMemoryBound(to: Float.self)
                while k < kc {
                    q[0] = r0[k]; q[1] = r1[k]; q[2] = r2[k]; q[3] = r3[k]; q[4] = r4[k]; q[5] = r5[k]
                    q += 6; k += 1
                }
                continue
            }
            if a.rowStride == 1 && a.rowIndex == nil {
                // Column-major A (a transposed operand, e.g. dYᵀ in the weight gradient): each k is
                // MR contiguous floats.
                let colBase = a.base + (i0 + p * mr)
                for k in 0..<kc {
                    let src = colBase + a.physicalCol(p0 + k) * a.colStride
                    let o = out + k * mr
                    for i in 0..<rows { o[i] = src[i] }
                    if rows < mr { for i in rows..<mr { o[i] = 0 } }
                }
                continue
            }
            for i in 0..<mr {
                if i < rows {
                    let rowBase = a.base + a.physicalRow(i0 + p * mr + i) * a.rowStride
                    if let ci = a.colIndex {
                        for k in 0..<kc { out[k * mr + i] = rowBase[Int(ci[p0 + k]) * a.colStride] }
                    } else {
                        let cs = a.colStride
                        var src = rowBase + p0 * cs
                        for k in 0..<kc { out[k * mr + i] = src.pointee; src += cs }
                    }
                } else {
                    for k in 0..<kc { out[k * mr + i] = 0 }
                }
            }
        }
    }

    /// Packs B panels `panelRange` of the block (cols j0..<j0+nc, k p0..<p0+kc).
    static func packB(_ b: MatrixOperand, j0: Int, nc: Int, p0: Int, kc: Int, nr: Int,
                      panelRange: Range<Int>, into dst: UnsafeMutablePointer<Float>) {
        for p in panelRange {
            let cols = min(nr, nc - p * nr)
            let out = dst + p * kc * nr
            let jBase = j0 + p * nr
            if b.colStride == 1 && b.colIndex == nil {
                // Row-major B: each k row holds NR contiguous values.
                for k in 0..<kc {
                    let src = b.base + b.physicalRow(p0 + k) * b.rowStride + jBase
                    let o = out + k * nr
                    for j in 0..<cols { o[j] = src[j] }
                    if cols < nr { for j in cols..<nr { o[j] = 0 } }
                }
            } else if b.rowStride == 1 && b.rowIndex == nil {
                // Transposed B (B = Wᵀ with W row-major, or the activations in `gemmWeightRows`): each column is a
                // contiguous source row. Four k at a time across all the panel's columns, so each k-row of the panel
                // is written whole and in order (column-outer order wrote it in 16-byte pieces 128 bytes apart and
                // was store-bound), each 4 × 4 block in eight shuffles (`transpose4x4`): 32 × 784 floats 12 → 17
                // floats/ns. Ragged columns, padding and the last kc % 4 steps are scalar.
                let full = cols & ~3, k4 = kc & ~3
                withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: max(full, 1)) { column in
                    for j in 0..<full { column[j] = b.base + b.physicalCol(jBase + j) * b.colStride + p0 }
                    @inline(__always) func edge(_ k: Int, _ o: UnsafeMutablePointer<Float>, from j0: Int) {
                        for j in j0..<nr { o[j] = j < cols ? b.element(p0 + k, jBase + j) : 0 }
                    }
                    var k = 0
                    while k < k4 {
                        let o = UnsafeMutableRawPointer(out + k * nr)
                        let stride = nr * 4
                        var j = 0
                        while j < full {
                            let t = transpose4x4(UnsafeRawPointer(column[j] + k).loadUnaligned(as: SIMD4<Float>.self),
                                                 UnsafeRawPointer(column[j + 1] + k).loadUnaligned(as: SIMD4<Float>.self),
                                                 UnsafeRawPointer(column[j + 2] + k).loadUnaligned(as: SIMD4<Float>.self),
                                                 UnsafeRawPointer(column[j + 3] + k).loadUnaligned(as: SIMD4<Float>.self))
                            let q = o + 4 * j
                            q.storeBytes(of: t.0, as: SIMD4<Float>.self)
                            q.storeBytes(of: t.1, toByteOffset: stride, as: SIMD4<Float>.self)
                            q.storeBytes(of: t.2, toByteOffset: 2 * stride, as: SIMD4<Float>.self)
                            q.storeBytes(of: t.3, toByteOffset: 3 * stride, as: SIMD4<Float>.self)
                            j += 4
                        }
                        if full < nr { for kk in 0..<4 { edge(k + kk, out + (k + kk) * nr, from: full) } }
                        k += 4
                    }
                    while k < kc { edge(k, out + k * nr, from: 0); k += 1 }
                }
            } else {
                for k in 0..<kc {
                    let o = out + k * nr
                    for j in 0..<nr { o[j] = j < cols ? b.element(p0 + k, jBase + j) : 0 }
                }
            }
        }
    }
}

/// Transposes the 4 × 4 block whose rows are r0…r3: the textbook eight shuffles (unpack low/high pairs of floats,
/// then of 64-bit pairs). The second stage goes through `SIMD2<Double>` on purpose: written with float lanes only,
/// LLVM merged the two stages into three-shuffle chains per output (12 shuffles, ~25 % slower).
@inline(__always)
func transpose4x4(_ r0: SIMD4<Float>, _ r1: SIMD4<Float>, _ r2: SIMD4<Float>, _ r3: SIMD4<Float>)
    -> (SIMD4<Float>, SIMD4<Float>, SIMD4<Float>, SIMD4<Float>) {
    let t0 = unsafeBitCast(SIMD4(r0[0], r1[0], r0[1], r1[1]), to: SIMD2<Double>.self)
    let t1 = unsafeBitCast(SIMD4(r0[2], r1[2], r0[3], r1[3]), to: SIMD2<Double>.self)
    let t2 = unsafeBitCast(SIMD4(r2[0], r3[0], r2[1], r3[1]), to: SIMD2<Double>.self)
    let t3 = unsafeBitCast(SIMD4(r2[2], r3[2], r2[3], r3[3]), to: SIMD2<Double>.self)
    return (unsafeBitCast(SIMD2(t0[0], t2[0]), to: SIMD4<Float>.self), unsafeBitCast(SIMD2(t0[1], t2[1]), to: SIMD4<Float>.self),
            unsafeBitCast(SIMD2(t1[0], t3[0]), to: SIMD4<Float>.self), unsafeBitCast(SIMD2(t1[1], t3[1]), to: SIMD4<Float>.self))
}
