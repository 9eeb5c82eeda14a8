import CKernelHints
import DGRuntime

/// Single-precision GEMM, BLIS-style: a register-tile micro-kernel (from the selected `KernelSet`)
/// wrapped by the five-loop nest over NC/KC/MC blocks with packed panels.
///
/// One engine owns the packing buffers for every worker slot, so repeated calls allocate nothing.
/// Calls on one engine must not overlap (the buffers are shared); use one engine per thread of control.
public final class GemmEngine: @unchecked Sendable {
    public let kernels: KernelSet
    public let executor: ParallelExecutor
    let aBuffers: SlotBuffers
    let bBuffers: SlotBuffers
    let narrowScratch = AlignedBuffer()
    let tileBuffers: SlotBuffers

    // The knobs below are `@exclusivity(unchecked)`: they are set between calls, never during one, and the dynamic
    // check on every read cost ~1 % of a per-sample layer's 32 narrow GEMM calls (likewise `PackedWeights.n`/`k`,
    // `AlignedBuffer`, and the knobs of `SparseEngine` and `MoEEngine`).
    /// Multi-threaded blocks share one packed B (BLIS-style, two fork-joins per block) instead of each worker
    /// packing its own slice of B and all of A. Tests turn it off to cover the other path.
    @exclusivity(unchecked) public var sharedPacking = true

    /// Calls over at most this many panels of B read A in place instead of packing it (each panel then re-reads
    /// A's rows from L2; packing pays off over more panels). 4 → 8: the packed gather of 205 active units (7 panels)
    /// at B = 256, H = 2048 took 2.5 % (compact) and 4 % (scattered) less in three alternated pairs; 16 panels gained
    /// nothing.
    public static let inPlacePanelLimit = 8
    /// Multi-worker column groups (each packs its panels of B and reads A in place) hold at most this many panels.
    static let columnGroupPanelLimit = 4

    /// Narrow products (n < NR/2) on one thread with k below this run on `gemmWeightRows`, otherwise as dot products. Each dot
    /// product pays a horizontal sum, which a short k does not amortise: the 10-class layer at B = 256 (1 thread,
    /// Zen 5) took 7.4 → 4.0 µs at k = 51, 10.0 → 7.7 at k = 128, 13–16 → 12.4 at k = 208, the same 14.2 at 256,
    /// and 22–27 against 33 µs at k = 512 for the dot products.
    static let narrowDotMinK = 256

    /// Tall multi-worker products with at most this many panels of B give each rectangle its own packed panel
    /// instead of BLIS's shared packed B (see `blockedPath`). Tests set 0 to cover the shared path on small shapes.
    @exclusivity(unchecked) public var ownPanelLimit = 8

    /// Below this many MACs a call runs on one worker: fork-join would cost more than it saves.
    @exclusivity(unchecked) public var parallelThresholdMACs = 1 << 17

    /// Profiling hook (`dgperf profile`): when true, time spent packing panels is added to `packTicks`,
    /// wall-attributed per call as the mean over the workers that packed. Off: one branch per packed block.
    @exclusivity(unchecked) public var measuresPacking = false
    /// Cumulative packing time in `CycleClock` ticks while `measuresPacking` was on.
    @exclusivity(unchecked) public private(set) var packTicks: UInt64 = 0
    /// Cumulative bytes the packing read (source floats × 4, all workers) while `measuresPacking` was on.
    @exclusivity(unchecked) public private(set) var packBytes: UInt64 = 0
    /// Per-slot packing ticks (word 0) and bytes (word 1) of the running call, one cache line per slot (no false
    /// sharing).
    private let slotPackNanos: UnsafeMutablePointer<UInt64>

    public init(kernels: KernelSet, executor: ParallelExecutor = SerialExecutor()) {
        self.kernels = kernels
        self.executor = executor
        aBuffers = SlotBuffers(count: executor.workerCount)
        bBuffers = SlotBuffers(count: executor.workerCount)
        tileBuffers = SlotBuffers(count: executor.workerCount, capacity: kernels.mr * kernels.nr * 2)
        slotPackNanos = .allocate(capacity: 8 * executor.workerCount)
        slotPackNanos.initialize(repeating: 0, count: 8 * executor.workerCount)
    }

    deinit { slotPackNanos.deallocate() }

    /// Runs one GEMM call; with `measuresPacking`, adds its wall-attributed packing time to `packTicks`.
    @inline(__always)
    func attributingPackTime(_ body: () -> Void) {
        guard measuresPacking else { body(); return }
        for s in 0..<workerCount { slotPackNanos[8 * s] = 0; slotPackNanos[8 * s + 1] = 0 }
        body()
        var sum: UInt64 = 0, packers: UInt64 = 0
        for s in 0..<workerCount where slotPackNanos[8 * s] > 0 { sum &+= slotPackNanos[8 * s]; packers += 1 }
        if packers > 0 { packTicks &+= sum / packers }
        for s in 0..<workerCount { packBytes &+= slotPackNanos[8 * s + 1] }
    }

    /// Times one pack of `floats` source elements on `slot` (see `measuresPacking`).
    @inline(__always)
    func timedPack(slot: Int, floats: Int, _ pack: () -> Void) {
        guard measuresPacking else { pack(); return }
        let t0 = CycleClock.now()
        pack()
        slotPackNanos[8 * slot] &+= CycleClock.now() &- t0
        slotPackNanos[8 * slot + 1] &+= UInt64(4 * floats)
    }

    public var workerCount: Int { executor.workerCount }

    /// Workers a call of `macs` multiply-adds runs on: all of them from `parallelThresholdMACs` up, else one.
    @inline(__always)
    func workers(forMACs macs: Int) -> Int { macs >= parallelThresholdMACs ? executor.workerCount : 1 }

    // MARK: - BLAS-like entry point

    /// C[m×n] = op(A)·op(B) (+ beta·C)(+ bias)(ReLU), all row-major.
    /// op(A) is m×k (`transA`: A is stored k×m), op(B) is k×n (`transB`: B is stored n×k,
    /// the usual `x·Wᵀ` layer). Throws on empty shapes, short leading dimensions and aliasing.
    @discardableResult
    public func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                      a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                      c: UnsafeMutablePointer<Float>, ldc: Int,
                      epilogue: Epilogue = .none) throws -> KernelCost {
        guard m >= 1, n >= 1, k >= 1 else { throw GemmError.emptyShape(m: m, n: n, k: k) }
        let aCols = transA ? m : k, bCols = transB ? k : n
        guard lda >= aCols else { throw GemmError.leadingDimension(name: "lda", value: lda, minimum: aCols) }
        guard ldb >= bCols else { throw GemmError.leadingDimension(name: "ldb", value: ldb, minimum: bCols) }
        guard ldc >= n else { throw GemmError.leadingDimension(name: "ldc", value: ldc, minimum: n) }
        let aRows = transA ? k : m, bRows = transB ? n : k
        let cSpan = (c, (m - 1) * ldc + n)
        if overlaps(cSpan, (UnsafeMutablePointer(mutating: a), (aRows - 1) * lda + aCols)) { throw GemmError.aliasing("A") }
        if overlaps(cSpan, (UnsafeMutablePointer(mutating: b), (bRows - 1) * ldb + bCols)) { throw GemmError.aliasing("B") }
        return gemm(m: m, n: n, k: k,
                    a: .rowMajor(a, ld: lda, transposed: transA),
                    b: .rowMajor(b, ld: ldb, transposed: transB),
                    c: OutputOperand(base: c, rowStride: ldc), epilogue: epilogue)
    }

    private func overlaps(_ x: (UnsafeMutablePointer<Float>, Int), _ y: (UnsafeMutablePointer<Float>, Int)) -> Bool {
        x.0 < y.0 + y.1 && y.0 < x.0 + x.1
    }

    // MARK: - General entry point (index maps)

    /// C = A·B with operand views (gathers via index maps). Preconditions (not checked here, the
    /// caller validated them): m, n, k ≥ 1; maps hold m / n / k valid indices; C aliases nothing.
    @discardableResult
    public func gemm(m: Int, n: Int, k: Int, a: MatrixOperand, b: MatrixOperand, c: OutputOperand,
                     epilogue: Epilogue = .none) -> KernelCost {
        let cost = KernelCost(macs: m * n * k, bytesRead: 4 * (m * k + k * n), bytesWritten: 4 * m * n)
        guard m > 0, n > 0 else { return .zero }
        if k == 0 {  // empty product: C = beta·C + bias, relu
            for i in 0..<m { for j in 0..<n { storeScalar(c, i, j, 0, epilogue) } }
            return cost
        }
        if m == 1 && b.rowStride == 1 && b.rowIndex == nil && a.colStride == 1 && a.colIndex == nil {
            gemvPath(n: n, k: k, a: a, b: b, c: c, epilogue: epilogue)
            return cost
        }
        if takesNarrowPath(m: m, n: n) && k < Self.narrowDotMinK && b.rowStride == 1 && b.rowIndex == nil
            && a.colStride == 1 && a.colIndex == nil && epilogue.beta == 0
            && workers(forMACs: m * n * k) == 1 {
            // A few output columns over a short k on one thread (the classifier after a shared mask's active units):
            // W's rows in place as the micro-kernel's A side, x packed once, tiles transposed into C. Split over
            // workers the dot products scale better (16 threads, k = 208: 10 µs against 21 µs here).
            return gemmWeightRows(m: m, n: n, k: k, a: a, w: b.base, ldw: b.colStride, wRows: b.colIndex, c: c, epilogue: epilogue)
        }
        if takesNarrowPath(m: m, n: n) && dotProductsFit(n: n, a: a, b: b, c: c, epilogue: epilogue) {
            // A few output columns whose weights are contiguous rows: dot products along k, nothing packed.
            narrowDotPath(m: m, n: n, k: k, a: a, b: b, c: c, epilogue: epilogue)
            return cost
        }
        if takesNarrowPath(m: m, n: n) {
            // Narrow output (e.g. 10 classes, 8 router logits): an NR-wide tile would be mostly padding. Compute Cᵀ = Bᵀ·Aᵀ
            // instead, so the narrow side becomes the MR-row side, then transpose it into C with the epilogue.
            narrowPath(m: m, n: n, k: k, a: a, b: b, c: c, epilogue: epilogue)
            return cost
        }
        attributingPackTime { blockedPath(m: m, n: n, k: k, a: a, b: b, c: c, epilogue: epilogue) }
        return cost
    }

    /// Whether `narrowDotPath` can run a narrow product (n < NR/2, `takesNarrowPath`): B is Wᵀ with W's rows contiguous
    /// and unmapped (`b` transposed row-major), A row-major and unmapped, C plainly addressed, nothing accumulated
    /// (beta 0), bias per column.
    private func dotProductsFit(n: Int, a: MatrixOperand, b: MatrixOperand, c: OutputOperand, epilogue: Epilogue) -> Bool {
        b.rowStride == 1 && b.rowIndex == nil && b.colIndex == nil && a.colStride == 1 && a.colIndex == nil
            && a.rowIndex == nil && c.isContiguous && epilogue.beta == 0 && epilogue.biasIndex == nil
    }

    /// C (m×n, n small) = act(A·Wᵀ + bias) as dot products of A's rows with W's n rows (the multi-sample gemv kernel:
    /// four weight rows meet four samples per register tile, A read in place). The transposed blocked path packs
    /// Aᵀ (m·k floats) for n ≤ 15 useful rows of 6-row tiles: the 10-class output layer at B = 256 (k = 512) spent
    /// 19 µs packing and 15 µs multiplying. Samples are split over the workers in blocks of 4, work-stolen.
    private func narrowDotPath(m: Int, n: Int, k: Int, a: MatrixOperand, b: MatrixOperand, c: OutputOperand, epilogue: Epilogue) {
        let multi = kernels.indexedGemvMulti
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: n) { rows in
            for j in 0..<n { rows[j] = Int32(j) }
            let w = b.base, ldw = b.colStride, rowIds = UnsafePointer(rows.baseAddress!)
            let body: (Range<Int>) -> Void = { samples in
                multi(n, k, w, ldw, rowIds, samples.count, a.base + samples.lowerBound * a.rowStride,
                      a.rowStride, c.base + samples.lowerBound * c.rowStride, c.rowStride, false, epilogue.bias, epilogue.relu)
            }
            let workers = workers(forMACs: m * n * k)
            if workers <= 1 { body(0..<m); return }
            executor.parallelForStealing(m, unit: 4, blocksPerWorker: WorkItems.itemsPerWorker) { samples, _ in body(samples) }
        }
    }

    /// Cᵀ (n×m, scratch) = Bᵀ·Aᵀ on the blocked path, then C(i, j) = Cᵀ(j, i) + epilogue.
    private func narrowPath(m: Int, n: Int, k: Int, a: MatrixOperand, b: MatrixOperand, c: OutputOperand, epilogue: Epilogue) {
        let at = MatrixOperand(base: b.base, rowStride: b.colStride, colStride: b.rowStride, rowIndex: b.colIndex, colIndex: b.rowIndex)
        let bt = MatrixOperand(base: a.base, rowStride: a.colStride, colStride: a.rowStride, rowIndex: a.colIndex, colIndex: a.rowIndex)
        let ct = narrowScratch.reserve(n * m)
        attributingPackTime {
            blockedPath(m: n, n: m, k: k, a: at, b: bt, c: OutputOperand(base: ct, rowStride: m), epilogue: .none)
        }
        for i in 0..<m {
            for j in 0..<n { storeScalar(c, i, j, ct[j * m + i], epilogue) }
        }
    }

    // MARK: - Batch-1 path

    private func gemvPath(n: Int, k: Int, a: MatrixOperand, b: MatrixOperand, c: OutputOperand, epilogue: Epilogue) {
        let x = a.base + a.physicalRow(0) * a.rowStride
        let tasks = n * k >= parallelThresholdMACs * 2 ? min(executor.workerCount, max(1, n / 64)) : 1
        let gemv = kernels.gemv
        let body: (Range<Int>, Int) -> Void = { range, slot in
            if b.colIndex == nil && c.isContiguous && epilogue.biasIndex == nil {
                gemv(range.count, k, b.base + range.lowerBound * b.colStride, b.colStride, x,
                     c.address(0, range.lowerBound), epilogue.beta,
                     epilogue.bias.map { $0 + range.lowerBound }, epilogue.relu)
            } else {
                // Gathered weight rows or scattered outputs: gathered-row gemv into a scratch vector, then the
                // epilogue through the output maps.
                let tmp = self.tileBuffers.reserve(slot, range.count)
                if let rows = b.colIndex {
                    self.kernels.indexedGemv(range.count, k, b.base, b.colStride, rows + range.lowerBound, x, tmp, false, nil, false)
                } else {
                    gemv(range.count, k, b.base + range.lowerBound * b.colStride, b.colStride, x, tmp, 0, nil, false)
                }
                for (t, j) in range.enumerated() { self.storeScalar(c, 0, j, tmp[t], epilogue) }
            }
        }
        if tasks <= 1 { body(0..<n, 0) } else { executor.parallelFor(n, grain: 64, body) }
    }

    // MARK: - Blocked path (the five loops)

    /// Splits C into one rectangle per worker and runs the serial loop nest on each, in one fork-join.
    /// No barrier: every worker packs its own B and A panels. Splitting along N duplicates A packing,
    /// along M duplicates B packing, so the split goes along the larger of the two (cost ∝ the other).
    private func blockedPath(m: Int, n: Int, k: Int, a: MatrixOperand, b: MatrixOperand, c: OutputOperand, epilogue: Epilogue) {
        let mr = kernels.mr, nr = kernels.nr
        var workers = workers(forMACs: m * n * k)
        let mTiles = (m + mr - 1) / mr, nTiles = (n + nr - 1) / nr
        let splitN = nTiles * nr >= mTiles * mr
        workers = min(workers, splitN ? nTiles : mTiles)
        if workers <= 1 {
            serialBlocked(rows: 0..<m, cols: 0..<n, k: k, a: a, b: b, c: c, epilogue: epilogue, slot: 0)
            return
        }
        // BLIS's shared packed B pays when A is the larger operand: every worker reads all of B, which the others
        // packed (lines moving between cores), and only its own rows of A. With fewer rows than columns, each worker
        // packing its own panels of B and reading all of A (read-only: clean copies in the shared cache) measured
        // faster: on a 16-vCPU Xeon at 16 threads 256×784×512 0.38–0.43 → 0.25 ms, 256×784×2048 1.49–1.80 →
        // 0.91–1.08 ms (1024³ stayed faster shared, 2.35–2.57 vs 2.75–3.31 ms); on 2 cores here 0.50 → 0.46 ms.
        if sharedPacking && mTiles >= 2 * executor.workerCount && m >= n {
            if nTiles <= ownPanelLimit && a.colStride == 1 && a.colIndex == nil {
                // A few panels (a gathered layer's active units, a gate's 32 columns): rectangles of one panel × a
                // block of rows, each packing its own panel (KC × NR in L1) and reading A in place. The panel is
                // packed once per row block instead of once, but nothing packed crosses cores and there is one
                // fork-join instead of two per stretch of K. At least four row tiles (24 rows) per rectangle, so each
                // packed panel serves enough rows (one tile each: 16 threads packed a 256 × 784 × 32 panel 43 times,
                // 0.038 against 0.030 ms).
                let rowBlocks = clamp((WorkItems.itemsPerWorker * workers + nTiles - 1) / nTiles, 1, max(1, mTiles / 4))
                executor.parallelForStealing(rowBlocks * nTiles) { item, t in
                    let block = item / nTiles, panel = item % nTiles
                    let t0 = block * mTiles / rowBlocks, t1 = (block + 1) * mTiles / rowBlocks
                    self.serialBlocked(rows: (t0 * mr)..<min(m, t1 * mr), cols: (panel * nr)..<min(n, (panel + 1) * nr),
                                       k: k, a: a, b: b, c: c, epilogue: epilogue, slot: t)
                }
                return
            }
            sharedBPath(m: m, n: n, k: k, a: a, b: b, c: c, epilogue: epilogue)
            return
        }
        if splitN && a.colStride == 1 && a.colIndex == nil {
            // Column groups of at most `columnGroupPanelLimit` panels, shared out with work stealing: each group packs
            // its own panels of B and reads A's rows in place, so nothing is packed twice however the groups move
            // between workers (a static split here waited for the slower core: 256×784×512 on 2 threads read
            // 0.46 or 0.54–0.62 ms from run to run, imbalance 1.01 or 1.07–1.12).
            let groupPanels = clamp(nTiles / (WorkItems.itemsPerWorker * workers), 1, Self.columnGroupPanelLimit)
            let groups = (nTiles + groupPanels - 1) / groupPanels
            executor.parallelForStealing(groups) { g, t in
                let lo = g * groupPanels * nr, hi = min(n, lo + groupPanels * nr)
                self.serialBlocked(rows: 0..<m, cols: lo..<hi, k: k, a: a, b: b, c: c, epilogue: epilogue, slot: t)
            }
            return
        }
        let tiles = splitN ? nTiles : mTiles, tile = splitN ? nr : mr, extent = splitN ? n : m
        executor.run(tasks: workers) { t in
            let lo = min(extent, tiles * t / workers * tile), hi = min(extent, tiles * (t + 1) / workers * tile)
            guard lo < hi else { return }
            if splitN {
                self.serialBlocked(rows: 0..<m, cols: lo..<hi, k: k, a: a, b: b, c: c, epilogue: epilogue, slot: t)
            } else {
                self.serialBlocked(rows: lo..<hi, cols: 0..<n, k: k, a: a, b: b, c: c, epilogue: epilogue, slot: t)
            }
        }
    }

    /// BLIS's shared B: the workers pack B's panels together, join, then each computes rectangles of C against all
    /// of them with its own rows of A. Nothing is packed twice. Two fork-joins per stretch of K that fits
    /// `sharedBudgetFloats` (L2-sized: all of K for narrow operands such as a gathered layer) instead of per KC
    /// block as in BLIS (2 joins × 4 K blocks for a 784-deep layer, ~4 µs each at 16 workers, each with a static pack
    /// region where only a few workers had panels). Pack items are (K block, panel) pairs and compute items are
    /// rectangles, both work-stolen; a rectangle runs its K blocks in order, so its C tile accumulates on one worker.
    private func sharedBPath(m: Int, n: Int, k: Int, a: MatrixOperand, b: MatrixOperand, c: OutputOperand, epilogue: Epilogue) {
        let bp = kernels.blocking
        let mr = bp.mr, nr = bp.nr
        let workers = executor.workerCount
        let kcStep = bp.balancedKC(for: k)
        let mTiles = (m + mr - 1) / mr
        for jc in stride(from: 0, to: n, by: bp.nc) {
            let nc = min(bp.nc, n - jc)
            let nPanels = (nc + nr - 1) / nr
            // A stretch of whole K blocks whose packed panels fit the budget (at least one block).
            let stretch = max(1, (sharedBudgetFloats ?? bp.mc * bp.kc) / (kcStep * nPanels * nr)) * kcStep
            let bPacked = bBuffers.reserve(0, min(stretch, k) * nPanels * nr)
            for p0 in stride(from: 0, to: k, by: stretch) {
                let depth = min(stretch, k - p0)
                let kBlocks = (depth + kcStep - 1) / kcStep
                // Block b of the stretch starts at (its k offset in the stretch) · nPanels · NR: kc × NR per panel.
                executor.parallelForStealing(kBlocks * nPanels) { item, _ in
                    let kb = item / nPanels, panel = item % nPanels
                    let pc = kb * kcStep, kc = min(kcStep, depth - pc)
                    Pack.packB(b, j0: jc, nc: nc, p0: p0 + pc, kc: kc, nr: nr, panelRange: panel..<(panel + 1),
                               into: bPacked + pc * nPanels * nr)
                }
                let items = WorkItems(mTiles: mTiles, nPanels: nPanels, mr: mr, mc: bp.mc, workers: workers)
                let aInPlace = readsAInPlace(panels: items.panelsPerGroup, a: a)
                executor.parallelForStealing(items.count) { item, t in
                    let (rows, panelRange) = items.rectangle(item, m: m)
                    for pc in stride(from: 0, to: depth, by: kcStep) {
                        let kc = min(kcStep, depth - pc), kAbs = p0 + pc
                        let blockEpilogue = Epilogue(beta: kAbs == 0 ? epilogue.beta : 1,
                                                     bias: kAbs + kc == k ? epilogue.bias : nil, biasIndex: epilogue.biasIndex,
                                                     relu: kAbs + kc == k && epilogue.relu)
                        let panels = PanelSource(base: bPacked + pc * nPanels * nr, panelStride: kc * nr, kOffset: 0,
                                                 panelIndex: nil, firstColumn: jc, nr: nr, columnLimit: jc + nc)
                        let aPacked = self.aBuffers.reserve(t, kc * items.rowsPerBlock)
                        if !aInPlace { Pack.packA(a, i0: rows.lowerBound, mc: rows.count, p0: kAbs, kc: kc, mr: mr, into: aPacked) }
                        self.macroKernel(mc: rows.count, kc: kc, ic: rows.lowerBound, panels: panels, panelRange: panelRange,
                                         aPacked: aPacked, aInPlace: aInPlace ? (a, kAbs) : nil, c: c,
                                         epilogue: blockEpilogue, slot: t)
                    }
                }
            }
        }
    }

    /// Packed B floats one shared-B stretch may hold; nil: the L2 budget of a packed A block (MC·KC), so every core
    /// keeps the stretch in its L2 (with all of K in one 4 MB stretch, 1024³ at 16 threads ran 25 % slower: each
    /// rectangle re-read B from L3). Tests shrink it to cover several stretches.
    var sharedBudgetFloats: Int? = nil

    /// Whether a block over `panels` B panels broadcasts from A's rows in place instead of packing them. Each packed A
    /// float serves one MR×NR tile per panel; with a few panels (a sparse selection, a per-sample group, a small
    /// expert, the active rows of W) packing costs as much as those tiles. (With many panels packing is amortised
    /// and in-place reads measured 0–5 % slower, so it stays.) Needs rows contiguous in k.
    @inline(__always)
    func readsAInPlace(panels: Int, a: MatrixOperand) -> Bool {
        panels <= Self.inPlacePanelLimit && a.colStride == 1 && a.colIndex == nil
    }

    /// The five BLIS loops for the sub-matrix C[rows, cols] on one worker slot.
    private func serialBlocked(rows: Range<Int>, cols: Range<Int>, k: Int, a: MatrixOperand, b: MatrixOperand,
                               c: OutputOperand, epilogue: Epilogue, slot: Int) {
        let bp = kernels.blocking
        let mr = bp.mr, nr = bp.nr
        let m = rows.upperBound, n = cols.upperBound
        let kcStep = bp.balancedKC(for: k)
        let kcMax = min(kcStep, k), ncMax = min(bp.nc, cols.count), mcMax = min(bp.mc, rows.count)
        let bPacked = bBuffers.reserve(slot, kcMax * ((ncMax + nr - 1) / nr) * nr)
        let aPacked = aBuffers.reserve(slot, kcMax * ((mcMax + mr - 1) / mr) * mr)
        for jc in stride(from: cols.lowerBound, to: n, by: bp.nc) {
            let nc = min(bp.nc, n - jc)
            let nPanels = (nc + nr - 1) / nr
            for pc in stride(from: 0, to: k, by: kcStep) {
                let kc = min(kcStep, k - pc)
                let first = pc == 0, last = pc + kc == k
                timedPack(slot: slot, floats: nc * kc) { Pack.packB(b, j0: jc, nc: nc, p0: pc, kc: kc, nr: nr, panelRange: 0..<nPanels, into: bPacked) }
                let blockEpilogue = Epilogue(beta: first ? epilogue.beta : 1,
                                             bias: last ? epilogue.bias : nil, biasIndex: epilogue.biasIndex,
                                             relu: last && epilogue.relu)
                let aInPlace = readsAInPlace(panels: nPanels, a: a)
                for ic in stride(from: rows.lowerBound, to: m, by: bp.mc) {
                    let mc = min(bp.mc, m - ic)
                    if !aInPlace { timedPack(slot: slot, floats: mc * kc) { Pack.packA(a, i0: ic, mc: mc, p0: pc, kc: kc, mr: mr, into: aPacked) } }
                    let panels = PanelSource(base: bPacked, panelStride: kc * nr, kOffset: 0, panelIndex: nil,
                                             firstColumn: jc, nr: nr, columnLimit: jc + nc)
                    macroKernel(mc: mc, kc: kc, ic: ic, panels: panels, panelRange: 0..<nPanels,
                                aPacked: aPacked, aInPlace: aInPlace ? (a, pc) : nil, c: c, epilogue: blockEpilogue, slot: slot)
                }
            }
        }
    }

    /// Loops 4 and 5 (jr over NR panels, ir over MR panels) around the micro-kernel.
    @inline(__always)
    private func macroKernel(mc: Int, kc: Int, ic: Int, panels: PanelSource, panelRange: Range<Int>,
                             aPacked: UnsafeMutablePointer<Float>, aInPlace: (MatrixOperand, Int)? = nil,
                             c: OutputOperand, epilogue: Epilogue, slot: Int) {
        let mr = kernels.mr, nr = kernels.nr
        let packedMicro = kernels.gemm, rowMicro = kernels.rowSourceGemm
        let tile = tileBuffers.reserve(slot, mr * nr + nr + 2 * mr)
        // With `aInPlace` (operand, k offset) the kernel broadcasts from MR row pointers instead of a packed panel.
        let rowPointers = UnsafeMutableRawPointer(tile + mr * nr + nr).assumingMemoryBound(to: UnsafePointer<Float>.self)
        @inline(__always) func micro(_ kc: Int, _ ir: Int, _ rows: Int, _ b: UnsafePointer<Float>, _ cp: UnsafeMutablePointer<Float>,
                                     _ ldc: Int, _ beta: Float, _ bias: UnsafePointer<Float>?, _ relu: Bool, _ stored: Int,
                                     _ prefetch: UnsafeRawPointer?) {
            if let (a, pc) = aInPlace {
                for i in 0..<mr { rowPointers[i] = a.base + a.physicalRow(ic + ir + min(i, rows - 1)) * a.rowStride + pc }
                rowMicro(kc, UnsafePointer(rowPointers), b, cp, ldc, beta, bias, relu, stored, prefetch)
            } else {
                packedMicro(kc, aPacked + ir * kc, b, cp, ldc, beta, bias, relu, stored, prefetch)
            }
        }
        let biasTile = tile + mr * nr
        for jp in panelRange {
            let (bPanel, col0) = panels.panel(jp)
            let cols = min(nr, panels.columnLimit - col0)
            // Bias for this panel: contiguous slice, or gathered into scratch when indexed.
            var bias: UnsafePointer<Float>? = nil
            if let b = epilogue.bias {
                if epilogue.biasIndex == nil && cols == nr { bias = b + col0 } else {
                    for j in 0..<nr { biasTile[j] = j < cols ? epilogue.biasValue(col0 + j) : 0 }
                    bias = UnsafePointer(biasTile)
                }
            }
            // (With A in place, taking each MR-row slice across all panels before moving on measured 5 % slower:
            // the B panels then come from L2.)
            // Pre-packed weights may not be in cache (freshly packed panels are in L2 already: 1–2 % slower with a
            // prefetch). Streamed ones (`PackedWeights.streamed`: more than half the last-level cache, or MoE experts
            // that together are) have the first strip's kernel prefetch the next panel's block, one B row per step,
            // so it streams in while this panel computes: 8-token experts (784 → 512 → 784, 25.7 MB per call)
            // otherwise computed and streamed in turn — 0.85 ms against 0.53 ms with the weights hot and 0.37 ms to
            // read them alone; 0.63 ms with it. On weights in L3 that cost 3–5 % (dense B = 32) and up to 25 %
            // (per-sample groups of a few rows, whose kernel is load-bound), so the others keep the older scheme: at
            // most `prefetchLinesPerStrip` lines of the next panel before each strip (8 experts × (64 tokens, 784 →
            // 512 → 784): 615 µs per expert without, 445 hot, 480 with; bursts of 100+ stalled a few-row strip).
            let next: UnsafeRawPointer? = panels.prePacked && jp + 1 < panelRange.upperBound
                ? UnsafeRawPointer(panels.panel(jp + 1).0) : panels.following
            var burstNext = panels.streamed ? nil : next, burstLeft = 0, burstPerStrip = 0
            if burstNext != nil {
                burstLeft = kc * nr * 4 / 64
                let strips = (mc + mr - 1) / mr
                burstPerStrip = min((burstLeft + strips - 1) / strips, Self.prefetchLinesPerStrip)
            }
            var ir = 0
            while ir < mc {
                let rows = min(mr, mc - ir)
                if let p = burstNext, burstLeft > 0 {
                    let n = min(burstPerStrip, burstLeft)
                    for l in 0..<n { dg_prefetch(p + 64 * l) }
                    burstNext = p + 64 * n
                    burstLeft -= n
                }
                let prefetch = panels.streamed && ir == 0 ? next : nil
                if cols == nr && c.isContiguous {
                    micro(kc, ir, rows, bPanel, c.base + (ic + ir) * c.rowStride + col0, c.rowStride,
                          epilogue.beta, bias, epilogue.relu, rows, prefetch)
                } else {
                    // Column edge or scattered tile: compute into scratch, then merge the valid part (every KC
                    // block of a narrow or gathered product comes through here, so the merge loop is kept tight).
                    micro(kc, ir, rows, bPanel, tile, nr, 0, nil, false, rows, prefetch)
                    mergeTile(tile, ld: nr, rows: rows, cols: cols, row0: ic + ir, col0: col0, c: c,
                              beta: epilogue.beta, bias: bias, relu: epilogue.relu)
                }
                ir += mr
            }
        }
    }

    /// Prefetches issued before one row strip of the macro-kernel for pre-packed weights that are not `streamed`.
    static let prefetchLinesPerStrip = 32

    /// C[row0 + i, col0 + j] = act(tile[i, j] + bias[j] + beta·C) through C's row/column maps, i < rows, j < cols;
    /// `bias` is already this panel's (`bias[j]` belongs to column col0 + j). Same arithmetic as `storeScalar`.
    @inline(__always)
    func mergeTile(_ tile: UnsafePointer<Float>, ld: Int, rows: Int, cols: Int, row0: Int, col0: Int, c: OutputOperand,
                   beta: Float, bias: UnsafePointer<Float>?, relu: Bool) {
        @inline(__always) func value(_ acc: Float, _ j: Int, _ old: Float) -> Float {
            var v = acc + (bias?[j] ?? 0)
            if beta != 0 { v += beta * old }
            if relu && v < 0 { v = 0 }
            return v
        }
        for i in 0..<rows {
            let dst = c.base + (c.rowIndex.map { Int($0[row0 + i]) } ?? (row0 + i)) * c.rowStride
            let src = tile + i * ld
            if let ci = c.colIndex {
                for j in 0..<cols {
                    let p = dst + Int(ci[col0 + j])
                    p.pointee = value(src[j], j, beta != 0 ? p.pointee : 0)
                }
            } else {
                let d = dst + col0
                for j in 0..<cols { d[j] = value(src[j], j, beta != 0 ? d[j] : 0) }
            }
        }
    }

    /// Whether `gemm` computes an m×n product as Cᵀ = Bᵀ·Aᵀ (narrow outputs: an NR-wide tile would be mostly padding,
    /// while m fills at least one NR-wide panel on the other side). Callers holding pre-packed weights use it to decide
    /// whether the unpacked call is the faster one.
    public func takesNarrowPath(m: Int, n: Int) -> Bool {
        n * 2 < kernels.nr && m >= kernels.nr
    }

    /// C(i, j) = acc + beta·C(i, j) + bias(j), ReLU — the scalar twin of the micro-kernel's epilogue.
    @inline(__always)
    func storeScalar(_ c: OutputOperand, _ i: Int, _ j: Int, _ acc: Float, _ e: Epilogue) {
        let p = c.address(i, j)
        var v = acc + e.biasValue(j)
        if e.beta != 0 { v += e.beta * p.pointee }
        if e.relu && v < 0 { v = 0 }
        p.pointee = v
    }

    // MARK: - Pre-packed weights

    /// Packs the layer weights W (n×k row-major, the `x·Wᵀ` form) once into NR-column panels for
    /// `gemm(m:a:packed:panels:c:epilogue:)`. Inference reuses it for every call.
    public func packWeights(_ w: UnsafePointer<Float>, n: Int, k: Int, ldw: Int) -> PackedWeights {
        let packed = PackedWeights(n: n, k: k, nr: kernels.nr)
        packWholeK(.rowMajor(w, ld: ldw, transposed: true), n: n, k: k, into: packed)
        packed.streamed = PackedWeights.streams(bytes: packed.bytes)
        return packed
    }

    /// Packs the listed rows of W (`rows[j]` is panel column j) into `into` (reshaped to rows.count × k): a shared
    /// mask's active rows, packed once per call so the pre-packed paths (in-place A, half panels) can run on them.
    public func packWeightRows(_ w: UnsafePointer<Float>, rows: UnsafeBufferPointer<Int32>, k: Int, ldw: Int,
                               into packed: PackedWeights) {
        precondition(packed.nr == kernels.nr && !rows.isEmpty && k >= 1, "packWeightRows: bad shape")
        packed.reshape(n: rows.count, k: k)
        let b = MatrixOperand(base: w, rowStride: 1, colStride: ldw, colIndex: rows.baseAddress)
        packWholeK(b, n: rows.count, k: k, into: packed)
    }

    /// Packs B (n columns × all of K) into whole-K panels, split over the workers in (panel, K chunk) items once it is
    /// large enough: it runs per call on a shared mask's active rows, and packed on one thread it was a serial stretch
    /// between parallel regions (48 rows × 784: ~3 µs).
    private func packWholeK(_ b: MatrixOperand, n: Int, k: Int, into packed: PackedWeights) {
        let nr = kernels.nr, panels = packed.panelCount, base = packed.storage.pointer
        let chunk = Self.packChunkK
        let chunks = (k + chunk - 1) / chunk
        attributingPackTime {
            guard executor.workerCount > 1 && n * k >= parallelThresholdMACs / 4 && panels * chunks > 1 else {
                timedPack(slot: 0, floats: n * k) { Pack.packB(b, j0: 0, nc: n, p0: 0, kc: k, nr: nr, panelRange: 0..<panels, into: base) }
                return
            }
            executor.parallelForStealing(panels * chunks) { item, slot in
                let p = item / chunks, p0 = (item % chunks) * chunk, kc = min(chunk, k - p0)
                // Panel p's rows p0..<p0+kc: the panel starts at p·k·NR, row p0 at p0·NR within it.
                self.timedPack(slot: slot, floats: min(nr, n - p * nr) * kc) {
                    Pack.packB(b, j0: p * nr, nc: min(nr, n - p * nr), p0: p0, kc: kc, nr: nr, panelRange: 0..<1,
                               into: base + p * k * nr + p0 * nr)
                }
            }
        }
    }

    /// K rows per item when whole-K panels are packed in parallel (32 KB of a 32-wide panel).
    static let packChunkK = 256

    /// Empty scratch for `packWeightRows`.
    public func makePackedScratch() -> PackedWeights { PackedWeights(n: 0, k: 0, nr: kernels.nr) }

    /// C = A·Wᵀ on pre-packed weights, optionally only for the selected NR-unit panels (`panels`,
    /// physical panel ids): a block mask whose blocks are whole panels skips packing entirely.
    /// C's columns are W's physical rows (units); `c.colIndex` may remap them (indexed by unit), and
    /// `epilogue.bias` is indexed by unit. Preconditions: m, k ≥ 1; A is m×k; panel ids < panelCount.
    @discardableResult
    public func gemm(m: Int, a: MatrixOperand, packed: PackedWeights, panels: UnsafeBufferPointer<Int32>? = nil,
                     c: OutputOperand, epilogue: Epilogue = .none) -> KernelCost {
        prePackedGemm(m: m, a: a, packed: packed, list: panels, range: 0..<packed.panelCount, c: c, epilogue: epilogue)
    }

    /// The same on a contiguous run of panels (`panelRange`, physical panel ids): a unit-major group of whole
    /// panels, or a MoE work item's share of an expert's panels, without building an id list.
    @discardableResult
    /// `then`: the weights the caller multiplies next; when both are streamed, a one-worker call prefetches their
    /// first panel during its last (a MoE call walks 16 expert matrices, whose first panels otherwise arrived at the
    /// demand rate).
    public func gemm(m: Int, a: MatrixOperand, packed: PackedWeights, panelRange: Range<Int>,
                     c: OutputOperand, epilogue: Epilogue = .none, then next: PackedWeights? = nil) -> KernelCost {
        precondition(panelRange.lowerBound >= 0 && panelRange.upperBound <= packed.panelCount, "panel range out of bounds")
        return prePackedGemm(m: m, a: a, packed: packed, list: nil, range: panelRange, c: c, epilogue: epilogue, then: next)
    }

    /// Both entry points: the selected panels are `list` (physical ids) when given, else the run `range`.
    private func prePackedGemm(m: Int, a: MatrixOperand, packed: PackedWeights, list panels: UnsafeBufferPointer<Int32>?,
                               range: Range<Int>, c: OutputOperand, epilogue: Epilogue,
                               then next: PackedWeights? = nil) -> KernelCost {
        precondition(packed.nr == kernels.nr, "weights were packed for another kernel set")
        let k = packed.k, nr = kernels.nr, mr = kernels.mr
        let selected = panels?.count ?? range.count
        // A run is the panel list `first + s`: the panel source starts at panel `first`, its column at first · NR.
        let first = panels == nil ? range.lowerBound : 0
        var columns = 0
        for s in 0..<selected {
            let p = panels.map { Int($0[s]) } ?? first + s
            columns += min(nr, packed.n - p * nr)
        }
        let cost = KernelCost(macs: m * columns * k, bytesRead: 4 * (m * k + k * columns), bytesWritten: 4 * m * columns)
        guard m > 0, selected > 0 else { return .zero }
        let bp = kernels.blocking
        let mTiles = (m + mr - 1) / mr
        var workers = workers(forMACs: m * columns * k)
        let splitN = selected * nr >= mTiles * mr
        workers = min(workers, splitN ? selected : mTiles)
        let panelIndex = panels?.baseAddress
        let aInPlace = readsAInPlace(panels: selected, a: a)
        let following = packed.streamed && workers <= 1 ? next.flatMap { $0.streamed ? UnsafeRawPointer($0.storage.pointer) : nil } : nil
        let body: (Range<Int>, Range<Int>, Int) -> Void = { rows, panelRange, slot in
            // A few rows (≤ 4 strips: a MoE expert's tokens, a small batch) run each panel's whole K at once while it
            // fits the L2 budget: K blocks then reuse a B block only a few times, and split each pre-packed panel into
            // short streams with C re-read per block (8 tokens, 784 → 512 → 784 experts: 38–53 → 62–69 GMAC/s;
            // neutral from 32 rows up).
            let kcStep = rows.count <= 4 * mr && nr * k <= bp.mc * bp.kc ? k : bp.balancedKC(for: k)
            let mcMax = min(bp.mc, rows.count), kcMax = min(kcStep, k)
            let aPacked = self.aBuffers.reserve(slot, kcMax * ((mcMax + mr - 1) / mr) * mr)
            for pc in stride(from: 0, to: k, by: kcStep) {
                let kc = min(kcStep, k - pc)
                let blockEpilogue = Epilogue(beta: pc == 0 ? epilogue.beta : 1,
                                             bias: pc + kc == k ? epilogue.bias : nil, biasIndex: epilogue.biasIndex,
                                             relu: pc + kc == k && epilogue.relu)
                for ic in stride(from: rows.lowerBound, to: rows.upperBound, by: bp.mc) {
                    let mc = min(bp.mc, rows.upperBound - ic)
                    // The next weights' first panel is fetched during the last macro-kernel call only.
                    let source = PanelSource(base: packed.storage.pointer + first * k * nr, panelStride: k * nr, kOffset: pc * nr,
                                             panelIndex: panelIndex, firstColumn: first * nr, nr: nr, columnLimit: packed.n,
                                             prePacked: true, streamed: packed.streamed,
                                             following: pc + kc == k && ic + mc == rows.upperBound ? following : nil)
                    if aInPlace {
                        self.macroKernel(mc: mc, kc: kc, ic: ic, panels: source, panelRange: panelRange, aPacked: aPacked,
                                         aInPlace: (a, pc), c: c, epilogue: blockEpilogue, slot: slot)
                    } else {
                        self.timedPack(slot: slot, floats: mc * kc) { Pack.packA(a, i0: ic, mc: mc, p0: pc, kc: kc, mr: mr, into: aPacked) }
                        self.macroKernel(mc: mc, kc: kc, ic: ic, panels: source, panelRange: panelRange,
                                         aPacked: aPacked, c: c, epilogue: blockEpilogue, slot: slot)
                    }
                }
            }
        }
        if m == 1 {
            // Batch 1: stream each selected panel once through the one-row kernel (memory bound).
            let x = a.base + a.physicalRow(0) * a.rowStride
            precondition(a.colStride == 1 && a.colIndex == nil, "batch-1 pre-packed path needs a contiguous row")
            let rowBody: (Range<Int>, Int) -> Void = { range, slot in
                let tile = self.tileBuffers.reserve(slot, 2 * nr)
                for s in range {
                    let p = panelIndex.map { Int($0[s]) } ?? first + s
                    let col0 = p * nr, cols = min(nr, packed.n - col0)
                    let panel = UnsafePointer(packed.storage.pointer) + p * k * nr
                    if cols == nr && c.isContiguous && epilogue.biasIndex == nil {
                        self.kernels.panelGemv(k, x, panel, c.address(0, col0), epilogue.beta,
                                               epilogue.bias.map { $0 + col0 }, epilogue.relu)
                    } else {
                        self.kernels.panelGemv(k, x, panel, tile, 0, nil, false)
                        for j in 0..<cols { self.storeScalar(c, 0, col0 + j, tile[j], epilogue) }
                    }
                }
            }
            if workers <= 1 { rowBody(0..<selected, 0) } else { executor.parallelFor(selected, grain: 2, rowBody) }
            return cost
        }
        attributingPackTime {
            if workers <= 1 {
                body(0..<m, 0..<selected, 0)
            } else {
                let items = WorkItems(mTiles: mTiles, nPanels: selected, mr: mr, mc: bp.mc, workers: workers, panelsFirst: splitN)
                executor.parallelForStealing(items.count) { item, slot in
                    let (rows, panelRange) = items.rectangle(item, m: m)
                    body(rows, panelRange, slot)
                }
            }
        }
        return cost
    }
}

/// Where the macro-kernel finds B panel `jp`: freshly packed (contiguous kc×NR panels) or pre-packed
/// (whole-K panels, optionally selected through a panel index map), and which C column it starts at.
struct PanelSource {
    let base: UnsafePointer<Float>
    let panelStride: Int
    let kOffset: Int
    let panelIndex: UnsafePointer<Int32>?
    let firstColumn: Int
    let nr: Int
    /// One past the last valid column (edge panels are zero-padded beyond it).
    let columnLimit: Int
    /// Whole-K pre-packed panels (maybe not in cache: the macro-kernel prefetches ahead), not panels just packed.
    let prePacked: Bool
    /// Pre-packed panels read from memory on each use (`PackedWeights.streamed`).
    let streamed: Bool
    /// Streamed weights that come after the last panel (their first panel is prefetched during it), if any.
    let following: UnsafeRawPointer?

    init(base: UnsafeMutablePointer<Float>, panelStride: Int, kOffset: Int, panelIndex: UnsafePointer<Int32>?,
         firstColumn: Int, nr: Int, columnLimit: Int, prePacked: Bool = false, streamed: Bool = false,
         following: UnsafeRawPointer? = nil) {
        self.base = UnsafePointer(base); self.panelStride = panelStride; self.kOffset = kOffset
        self.panelIndex = panelIndex; self.firstColumn = firstColumn; self.nr = nr; self.columnLimit = columnLimit
        self.prePacked = prePacked; self.streamed = streamed; self.following = following
    }

    @inline(__always) func panel(_ jp: Int) -> (UnsafePointer<Float>, Int) {
        let p = panelIndex.map { Int($0[jp]) } ?? jp
        return (base + p * panelStride + kOffset, firstColumn + p * nr)
    }
}

/// Layer weights packed once into NR-unit panels, each the whole K deep (k-major, zero-padded).
public final class PackedWeights: @unchecked Sendable {
    // Unchecked: read on every GEMM call, changed only by `reshape` between calls (see `GemmEngine`'s knobs).
    @exclusivity(unchecked) public private(set) var n: Int
    @exclusivity(unchecked) public private(set) var k: Int
    public let nr: Int
    public var panelCount: Int { (n + nr - 1) / nr }
    let storage: AlignedBuffer
    /// Whether these weights come from memory rather than cache on each use, so the GEMM prefetches them a panel
    /// ahead from inside the micro-kernel (see `GemmEngine.macroKernel`). `packWeights` sets it for a matrix that
    /// `streams`; `MoEEngine.pack` for experts that together do.
    @exclusivity(unchecked) public var streamed = false

    /// Whether `bytes` of weights read call after call stream from memory: more than half the last-level cache, which
    /// also holds activations, other layers and (on a shared VM) other tenants — here 25.7 MB of experts streamed from
    /// a 32 MB L3 and 6.4 MB stayed in it. False where the size is unknown.
    public static func streams(bytes: Int) -> Bool { CacheSizes.lastLevelBytes.map { bytes > $0 / 2 } ?? false }

    /// Bytes of the packed panels (zero-padded to whole panels).
    public var bytes: Int { panelCount * nr * k * 4 }

    init(n: Int, k: Int, nr: Int) {
        self.n = n; self.k = k; self.nr = nr
        storage = AlignedBuffer(capacity: ((n + nr - 1) / nr) * nr * k)
    }

    /// Re-targets this buffer to n × k (scratch reused call after call; contents are not kept).
    func reshape(n: Int, k: Int) {
        self.n = n; self.k = k
        _ = storage.reserve(((n + nr - 1) / nr) * nr * k)
    }
}

/// How a multi-worker GEMM cuts C into rectangles for `parallelForStealing`: row blocks of whole MR tiles × groups
/// of NR panels, about `itemsPerWorker` per worker — enough for stealing to even out cores of unequal speed, few
/// enough that each item still reuses what it loads (on the 16-vCPU VM 4 and 8 measured alike; on 2 equal cores 8
/// cost 3–4 % at 1024³). Rows are split first (`panelsFirst` false: the workers share one packed B, each item packs
/// or reads its own rows of A; blocks stay within MC rows) unless the weights are the wider side (`panelsFirst`:
/// pre-packed panels, at least `minPanelsPerItem` per item so the A rows an item packs serve several panels).
/// Tiles and panels are dealt out as evenly as they divide (blocks differ by at most one tile), and the item count
/// is a multiple of the workers where the shape allows (43 row tiles as 9 blocks of 5 left one of 2 workers a
/// whole block behind). Items are numbered along the first-split axis's blocks, so a worker's own share is
/// contiguous in it.
struct WorkItems {
    static let itemsPerWorker = 4
    static let minPanelsPerItem = 4
    let rowBlocks: Int
    let panelGroups: Int
    let panelsFirst: Bool
    let mTiles: Int
    let mr: Int
    let nPanels: Int
    var count: Int { rowBlocks * panelGroups }
    /// The most rows one item holds (for sizing packed-A scratch).
    var rowsPerBlock: Int { (mTiles + rowBlocks - 1) / rowBlocks * mr }
    /// The most panels one item holds.
    var panelsPerGroup: Int { (nPanels + panelGroups - 1) / panelGroups }

    init(mTiles: Int, nPanels: Int, mr: Int, mc: Int, workers: Int, panelsFirst: Bool = false) {
        let target = Self.itemsPerWorker * workers
        var blocks: Int, groups: Int
        if panelsFirst {
            groups = max(1, min(target, nPanels / Self.minPanelsPerItem))
            blocks = min(mTiles, (target + groups - 1) / groups)
        } else {
            let mcTiles = max(1, mc / mr)
            blocks = max(min(mTiles, target), (mTiles + mcTiles - 1) / mcTiles)
            groups = blocks >= target ? 1 : max(1, min(nPanels, (target + blocks - 1) / blocks))
        }
        rowBlocks = blocks; panelGroups = groups
        self.panelsFirst = panelsFirst
        self.mTiles = mTiles; self.mr = mr; self.nPanels = nPanels
    }

    /// Rows of C (clipped to m) and panel indices of item `item`.
    @inline(__always)
    func rectangle(_ item: Int, m: Int) -> (rows: Range<Int>, panels: Range<Int>) {
        let block = panelsFirst ? item % rowBlocks : item / panelGroups
        let group = panelsFirst ? item / rowBlocks : item % panelGroups
        let t0 = block * mTiles / rowBlocks, t1 = (block + 1) * mTiles / rowBlocks
        let p0 = group * nPanels / panelGroups, p1 = (group + 1) * nPanels / panelGroups
        return (t0 * mr..<min(m, t1 * mr), p0..<p1)
    }
}
