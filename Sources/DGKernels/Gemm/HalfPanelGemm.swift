import DGRuntime

extension GemmEngine {
    /// Whether 16-unit (NR/2) blocks of pre-packed weights can run on half panels (AVX-512: NR = 32).
    public var hasHalfPanelKernel: Bool { kernels.halfPanelGemm != nil }

    /// C[i, j] = act(A[i, :]·W[lo + j, :] + bias[lo + j]) for j < width = min(NR/2, units − lo), on one half of
    /// one pre-packed NR-unit panel: the block of NR/2 units starting at `lo` (a multiple of NR/2) runs without
    /// being padded to NR columns or re-packed. Serial (callers parallelise over blocks). C column j is unit lo + j;
    /// `epilogue.bias` is indexed by unit (through `epilogue.biasIndex` when set: gathered weight rows).
    /// Preconditions: `hasHalfPanelKernel`, m ≥ 1, lo < packed.n, A's rows contiguous in k (a row map is fine).
    @discardableResult
    public func gemmHalfPanel(m: Int, a: MatrixOperand, packed: PackedWeights, firstUnit lo: Int,
                              c: OutputOperand, epilogue: Epilogue = .none) -> KernelCost {
        guard let micro = kernels.halfPanelGemm else { preconditionFailure("no half-panel kernel for \(kernels.name)") }
        let nr = kernels.nr, half = nr / 2, k = packed.k
        precondition(packed.nr == nr && lo % half == 0 && lo < packed.n, "half panel must start on an NR/2 boundary")
        let width = min(half, packed.n - lo)
        let cost = KernelCost(macs: m * width * k, bytesRead: 4 * (m * k + k * width), bytesWritten: 4 * m * width)
        guard m > 0 else { return .zero }
        let panel = UnsafePointer(packed.storage.pointer) + (lo / nr) * k * nr + lo % nr
        rowStrips(m: m, a: a, k: k, firstUnit: lo, width: width, tileWidth: half, c: c, epilogue: epilogue) {
            kc, rows, pc, tile, ldc, beta, bias, relu, count in
            micro(kc, rows, panel + pc * nr, tile, ldc, beta, bias, relu, count, nil)
        }
        return cost
    }

    /// C[i, j] = act(A[i, :]·W[j, :] + bias(j)) for all n units of `packed` when NR < n ≤ 1.5·NR (a whole panel and at
    /// most half of the next), in one pass over A's rows with the MR × 1.5·NR kernel: the packed gather's last 33–48
    /// active units (AVX-512). Same contract as `gemmHalfPanel` otherwise (C column j is unit j).
    @discardableResult
    public func gemmPanelAndHalf(m: Int, a: MatrixOperand, packed: PackedWeights, c: OutputOperand,
                                 epilogue: Epilogue = .none) -> KernelCost {
        guard let micro = kernels.panelAndHalfGemm else { preconditionFailure("no panel-and-half kernel for \(kernels.name)") }
        let nr = kernels.nr, k = packed.k, n = packed.n
        precondition(packed.nr == nr && n > nr && 2 * n <= 3 * nr, "panel and half: needs NR < n ≤ 1.5·NR units")
        let cost = KernelCost(macs: m * n * k, bytesRead: 4 * (m * k + k * n), bytesWritten: 4 * m * n)
        guard m > 0 else { return .zero }
        let panels = UnsafePointer(packed.storage.pointer), panelStride = k * nr
        rowStrips(m: m, a: a, k: k, firstUnit: 0, width: n, tileWidth: nr + nr / 2, c: c, epilogue: epilogue) {
            kc, rows, pc, tile, ldc, beta, bias, relu, count in
            micro(kc, rows, panels + pc * nr, panelStride, tile, ldc, beta, bias, relu, count)
        }
        return cost
    }

    /// The loop both narrow kernels share: MR-row strips of A read in place (row pointers) against one B block of
    /// `tileWidth` columns (`width` of them real, from unit `firstUnit`). All of K in one call (one epilogue, no C
    /// re-reads, fewer calls) whenever the B block fits the L2 budget of a packed A block (it then stays in L2 across
    /// strips; with KC blocking a 45-unit tail merged its scratch tile once per K block: 125 µs against 97 at
    /// B = 256, k = 784) or the strips are ≤ 2; K-blocked otherwise. Full-width tiles store straight into C; narrower
    /// ones go through a scratch tile and `mergeTile`.
    /// `kernel(kc, rowPointers, pc, c, ldc, beta, bias, relu, rows)` computes one tile at K offset pc.
    private func rowStrips(m: Int, a: MatrixOperand, k: Int, firstUnit lo: Int, width: Int, tileWidth: Int,
                           c: OutputOperand, epilogue: Epilogue,
                           kernel: (Int, UnsafePointer<UnsafePointer<Float>>, Int, UnsafeMutablePointer<Float>, Int, Float,
                                    UnsafePointer<Float>?, Bool, Int) -> Void) {
        precondition(a.colStride == 1 && a.colIndex == nil, "narrow GEMMs read A's rows in place: they must be contiguous in k")
        let mr = kernels.mr
        let direct = width == tileWidth && c.isContiguous
        let bp = kernels.blocking
        let kcStep = m <= 2 * mr || tileWidth * k <= bp.mc * bp.kc ? k : bp.balancedKC(for: k)
        let tile = tileBuffers.reserve(0, mr * tileWidth + 2 * mr + tileWidth)
        let rowPointers = UnsafeMutableRawPointer(tile + mr * tileWidth).assumingMemoryBound(to: UnsafePointer<Float>.self)
        // This block's bias, contiguous: a slice, or gathered through `biasIndex` (zero past the last unit).
        var shifted: UnsafePointer<Float>? = nil
        if let b = epilogue.bias {
            if let bi = epilogue.biasIndex {
                let gathered = tile + mr * tileWidth + 2 * mr
                for j in 0..<tileWidth { gathered[j] = j < width ? b[Int(bi[lo + j])] : 0 }
                shifted = UnsafePointer(gathered)
            } else {
                shifted = b + lo  // a narrower tile merges only `width` of them
            }
        }
        for pc in stride(from: 0, to: k, by: kcStep) {
            let kc = min(kcStep, k - pc)
            let first = pc == 0, last = pc + kc == k
            let beta = first ? epilogue.beta : 1, bias = last ? shifted : nil, relu = last && epilogue.relu
            var ir = 0
            while ir < m {
                let rows = min(mr, m - ir)
                for i in 0..<mr {
                    let r = ir + min(i, rows - 1)  // an edge strip repeats its last row
                    rowPointers[i] = a.base + a.physicalRow(r) * a.rowStride + pc
                }
                if direct {
                    kernel(kc, UnsafePointer(rowPointers), pc, c.address(ir, 0), c.rowStride, beta, bias, relu, rows)
                } else {
                    kernel(kc, UnsafePointer(rowPointers), pc, tile, tileWidth, 0, nil, false, mr)
                    mergeTile(tile, ld: tileWidth, rows: rows, cols: width, row0: ir, col0: 0, c: c, beta: beta, bias: bias, relu: relu)
                }
                ir += mr
            }
        }
    }
}
