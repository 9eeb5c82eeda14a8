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
        let nr = kernels.nr, half = nr / 2, mr = kernels.mr, k = packed.k
        precondition(packed.nr == nr && lo % half == 0 && lo < packed.n, "half panel must start on an NR/2 boundary")
        let width = min(half, packed.n - lo)
        let cost = KernelCost(macs: m * width * k, bytesRead: 4 * (m * k + k * width), bytesWritten: 4 * m * width)
        guard m > 0 else { return .zero }
        // K blocks keep a B panel in L1 while many row strips reuse it; a group of ≤ 2 strips reuses it at most
        // twice, so it runs all of K in one call (one epilogue, no C re-reads, a quarter of the calls).
        let kcStep = m <= 2 * mr ? k : kernels.blocking.balancedKC(for: k)
        let tile = tileBuffers[0].reserve(mr * half + 2 * mr + half)
        // A is read in place (MR row pointers into the gathered rows): a narrow block amortises no packing.
        let rowPointers = UnsafeMutableRawPointer(tile + mr * half).assumingMemoryBound(to: UnsafePointer<Float>.self)
        let panel = UnsafePointer(packed.storage.pointer) + (lo / nr) * k * nr + lo % nr
        // This block's bias, contiguous: a slice, or gathered through `biasIndex` (zero past the last unit).
        var shifted: UnsafePointer<Float>? = nil
        if let b = epilogue.bias {
            if let bi = epilogue.biasIndex {
                let gathered = tile + mr * half + 2 * mr
                for j in 0..<half { gathered[j] = j < width ? b[Int(bi[lo + j])] : 0 }
                shifted = UnsafePointer(gathered)
            } else {
                shifted = b + lo
            }
        }
        precondition(a.colStride == 1 && a.colIndex == nil, "half-panel GEMM reads A's rows in place: they must be contiguous in k")
        for pc in stride(from: 0, to: k, by: kcStep) {
            let kc = min(kcStep, k - pc)
            let first = pc == 0, last = pc + kc == k
            let e = Epilogue(beta: first ? epilogue.beta : 1, bias: last ? shifted : nil, relu: last && epilogue.relu)
            var ir = 0
            while ir < m {
                let rows = min(mr, m - ir)
                for i in 0..<mr {
                    let r = ir + min(i, rows - 1)  // an edge strip repeats its last row
                    rowPointers[i] = a.base + a.physicalRow(r) * a.rowStride + pc
                }
                if width == half && c.isContiguous {
                    micro(kc, UnsafePointer(rowPointers), panel + pc * nr, c.address(ir, 0), c.rowStride, e.beta, e.bias, e.relu, rows)
                } else {
                    micro(kc, UnsafePointer(rowPointers), panel + pc * nr, tile, half, 0, nil, false, mr)
                    mergeTile(tile, ld: half, rows: rows, cols: width, row0: ir, col0: 0, c: c, beta: e.beta, bias: e.bias, relu: e.relu)
                }
                ir += mr
            }
        }
        return cost
    }
}
