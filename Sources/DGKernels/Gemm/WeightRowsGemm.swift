import DGRuntime

extension GemmEngine {
    /// C[i, j] = act(Σ_k A[i, k]·W[w(j), k] + bias(j)) (+ beta·C) — the layer `x·Wᵀ` with the roles of the
    /// operands swapped: W's rows are the micro-kernel's A side, read in place through row pointers (gathered
    /// by `wRows`, never packed), and the activations are packed once per call as its B side (Aᵀ panels of
    /// NR samples). The kernel computes Cᵀ tiles (units × samples) into scratch; the epilogue transposes them.
    ///
    /// Why: a shared mask then costs nothing to apply — the packed path has to re-pack the active rows of W on
    /// every call (a transpose of r·H·D floats), which at batch 32 costs about as much as their multiply-adds.
    /// The price is NR-sample panels: a batch that is not a multiple of NR pays for padded lanes.
    ///
    /// - a: m×k (row map allowed: gathered samples); w: rows of length ≥ k with leading dimension `ldw`;
    ///   wRows: n physical row ids of W (nil: rows 0..<n); c, epilogue: as `gemm` (column j is logical unit j;
    ///   bias and `c.colIndex` are indexed by it).
    @discardableResult
    public func gemmWeightRows(m: Int, n: Int, k: Int, a: MatrixOperand, w: UnsafePointer<Float>, ldw: Int,
                               wRows: UnsafePointer<Int32>?, c: OutputOperand, epilogue: Epilogue = .none) -> KernelCost {
        let cost = KernelCost(macs: m * n * k, bytesRead: 4 * (m * k + k * n), bytesWritten: 4 * m * n)
        guard m > 0, n > 0, k > 0 else { return .zero }
        let bp = kernels.blocking
        let mr = kernels.mr, nr = kernels.nr
        let kcStep = bp.balancedKC(for: k)
        let kBlocks = (k + kcStep - 1) / kcStep
        let mPanels = (m + nr - 1) / nr, mPad = mPanels * nr
        // Aᵀ as B panels, all of K: block b holds mPanels panels of kc × NR floats (k-major, zero-padded lanes).
        let aT = MatrixOperand(base: a.base, rowStride: a.colStride, colStride: a.rowStride,
                               rowIndex: a.colIndex, colIndex: a.rowIndex)
        let packed = bBuffers.reserve(0, k * mPad)
        let ct = narrowScratch.reserve(n * mPad)
        let workers = workers(forMACs: m * n * k)
        let packTasks = kBlocks * mPanels
        let packItem: (Int, Int) -> Void = { t, slot in
            let kb = t / mPanels, p = t % mPanels
            let pc = kb * kcStep, kc = min(kcStep, k - pc)
            self.timedPack(slot: slot, floats: min(nr, m - p * nr) * kc) {
                Pack.packB(aT, j0: 0, nc: m, p0: pc, kc: kc, nr: nr, panelRange: p..<(p + 1), into: packed + pc * mPad)
            }
        }
        attributingPackTime {
            if workers > 1 && packTasks > 1 {
                executor.parallelForStealing(packTasks) { t, slot in packItem(t, slot) }
            } else {
                for t in 0..<packTasks { packItem(t, 0) }
            }
        }

        let micro = kernels.rowSourceGemm
        // Bias per logical unit, gathered once (the transposed epilogue reads it per element).
        let biasTile = tileBuffers.reserve(0, max(n, 1))
        for j in 0..<n { biasTile[j] = epilogue.biasValue(j) }
        let contiguous = c.rowIndex == nil && epilogue.beta == 0, relu = epilogue.relu, columnMap = c.colIndex
        let groups = (n + mr - 1) / mr
        // A rectangle of (unit groups × sample panels); the panel loop sits outside the group loop.
        let body: (Range<Int>, Range<Int>) -> Void = { range, samplePanels in
            withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: mr) { rowPtrs in
                let rp = rowPtrs.baseAddress!
                // BLIS order with the roles swapped: the sample panel (kc × NR) stays in L1 while this worker's
                // weight-row slices (kc floats each) stream past it. (Blocking the groups so their slices stay in L1
                // across sample panels measured no faster at B = 256, so the loop stays plain.)
                for pc in stride(from: 0, to: k, by: kcStep) {
                    let kc = min(kcStep, k - pc)
                    let block = UnsafePointer(packed + pc * mPad)
                    for p in samplePanels {
                        for g in range {
                            let j0 = g * mr, rows = min(mr, n - j0)
                            for i in 0..<mr {
                                let j = j0 + min(i, rows - 1)  // an edge group repeats its last row
                                let physical = wRows.map { Int($0[j]) } ?? j
                                (rp + i).initialize(to: w + physical * ldw + pc)
                            }
                            let tile = ct + j0 * mPad + p * nr
                            micro(kc, UnsafePointer(rp), block + p * kc * nr, tile, mPad, pc == 0 ? 0 : 1, nil, false, rows, nil)
                            if pc + kc == k {
                                // Last K block: the tile is in L1, transpose it into C with the epilogue.
                                let i0 = p * nr, cols = min(nr, m - i0)
                                if contiguous {
                                    // Bias and ReLU along the tile's rows (contiguous samples: vector code), then
                                    // a plain transpose into C, six independent stores per sample.
                                    for u in 0..<rows {
                                        let t = tile + u * mPad, bv = biasTile[j0 + u]
                                        if relu { for i in 0..<cols { t[i] = max(t[i] + bv, 0) } }
                                        else if bv != 0 { for i in 0..<cols { t[i] += bv } }
                                    }
                                    @inline(__always) func column(_ u: Int) -> Int { columnMap.map { Int($0[j0 + u]) } ?? (j0 + u) }
                                    let dst = c.base + i0 * c.rowStride, ldc = c.rowStride
                                    if rows == 6 {
                                        let c0 = column(0), c1 = column(1), c2 = column(2)
                                        let c3 = column(3), c4 = column(4), c5 = column(5)
                                        let t0 = tile, t1 = t0 + mPad, t2 = t1 + mPad, t3 = t2 + mPad, t4 = t3 + mPad, t5 = t4 + mPad
                                        for i in 0..<cols {
                                            let row = dst + i * ldc
                                            row[c0] = t0[i]; row[c1] = t1[i]; row[c2] = t2[i]
                                            row[c3] = t3[i]; row[c4] = t4[i]; row[c5] = t5[i]
                                        }
                                    } else {
                                        for u in 0..<rows {
                                            let cu = column(u), t = tile + u * mPad
                                            for i in 0..<cols { dst[i * ldc + cu] = t[i] }
                                        }
                                    }
                                } else {
                                    for i in 0..<cols {
                                        for u in 0..<rows { self.storeScalar(c, i0 + i, j0 + u, tile[u * mPad + i], epilogue) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        if workers > 1 && groups * mPanels > 1 {
            // Work-stolen rectangles, about `WorkItems.itemsPerWorker` per worker (a static share of the groups
            // waited for the slowest core and gave 16 workers two or three groups each at B = 32).
            let items = WorkItems(mTiles: groups, nPanels: mPanels, mr: mr, mc: bp.mc, workers: workers)
            executor.parallelForStealing(items.count) { item, _ in
                let (units, samplePanels) = items.rectangle(item, m: n)
                body((units.lowerBound / mr)..<((units.upperBound + mr - 1) / mr), samplePanels)
            }
        } else {
            body(0..<groups, 0..<mPanels)
        }
        return cost
    }
}
