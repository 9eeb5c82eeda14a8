import CKernelHints
import DGRuntime

/// Counts over a per-sample mask that the cost model and the accounting need, in one pass over the bits
/// (O(batch × blocks) byte reads, no allocation per sample).
struct MaskStats {
    let batch: Int
    let units: Int
    let blocks: Int
    let granularity: Int
    /// Active (sample, unit) pairs.
    var activePairs = 0
    /// Maximal runs of consecutive active units, summed over samples (one gemv call each in sample-major).
    var runs = 0
    /// Σ over runs of (run length mod 4) — rows the gemv kernel computes one at a time (estimated for G not a multiple of 4).
    var leftoverRows = 0
    /// Samples using block j.
    var blockUsers: [Int]
    /// Blocks per wide group (enough adjacent blocks to fill NR columns) and samples using each wide group.
    let wideBlocksPerGroup: Int
    var wideUsers: [Int]

    /// Counts over the mask's rows `rows` (all of them by default); partial counts over disjoint row ranges add up
    /// with `merge` (`SparseEngine.maskStats` splits them over the workers).
    init(_ mask: GateMask, wideBlocksPerGroup bpg: Int, rows: Range<Int>? = nil) {
        batch = mask.batch; units = mask.units; blocks = mask.blockCount; granularity = mask.granularity
        wideBlocksPerGroup = max(1, bpg)
        var runs = 0
        let blocks = self.blocks, wide = wideBlocksPerGroup
        let rows = rows ?? 0..<mask.batch
        // Bits are 0/1 (GateMask normalises them), so the counts are sums of bytes: rows are added 16 bytes at a time
        // into byte counters (flushed every 255 rows), in memory order. Element-wise loops into Int counters cost 6 % of
        // a dense layer's time, which dense-then-mask paid on top of the GEMM; now it is under 1 %.
        typealias B16 = SIMD16<UInt8>
        var counts = [UInt8](repeating: 0, count: blocks)
        var users = [Int](repeating: 0, count: blocks)
        var wideCounts = [Int](repeating: 0, count: wide > 1 ? (blocks + wide - 1) / wide : 0)
        mask.bits.withUnsafeBufferPointer { bits in
            let raw = UnsafeRawPointer(bits.baseAddress!)
            counts.withUnsafeMutableBytes { cb in
                wideCounts.withUnsafeMutableBufferPointer { wideU in
                    let acc = cb.baseAddress!
                    let whole = blocks & ~15
                    var b = rows.lowerBound
                    while b < rows.upperBound {
                        let end = min(rows.upperBound, b + 255)
                        while b < end {
                            let row = raw + b &* blocks
                            var j = 0
                            while j < whole {
                                let v = row.loadUnaligned(fromByteOffset: j, as: B16.self)
                                acc.storeBytes(of: acc.loadUnaligned(fromByteOffset: j, as: B16.self) &+ v, toByteOffset: j, as: B16.self)
                                j &+= 16
                            }
                            while j < blocks { acc.storeBytes(of: acc.load(fromByteOffset: j, as: UInt8.self) &+ row.load(fromByteOffset: j, as: UInt8.self), toByteOffset: j, as: UInt8.self); j &+= 1 }
                            // Run starts: an active block whose left neighbour is inactive, eight blocks a word (bytes
                            // are 0/1, so `word & ~(word shifted by one block)` keeps one bit per start).
                            var carry: UInt64 = 0
                            j = 0
                            while j &+ 8 <= blocks {
                                let word = row.loadUnaligned(fromByteOffset: j, as: UInt64.self)
                                // One 0/1 byte per start: their sum is the top byte of a multiply (this target has
                                // no POPCNT; the emulated popcount made these statistics ~10 % slower).
                                runs &+= Int(truncatingIfNeeded: ((word & ~((word << 8) | carry)) &* 0x0101_0101_0101_0101) >> 56)
                                carry = word >> 56
                                j &+= 8
                            }
                            var previous = UInt8(truncatingIfNeeded: carry)
                            while j < blocks {
                                let v = row.load(fromByteOffset: j, as: UInt8.self)
                                runs &+= Int(v & ~previous & 1)
                                previous = v; j &+= 1
                            }
                            if wide > 1 {
                                // Samples using each wide group.
                                forEachActiveGroup(row.assumingMemoryBound(to: UInt8.self), blocks: blocks, blocksPerGroup: wide) {
                                    wideU[$0] &+= 1
                                }
                            }
                            b &+= 1
                        }
                        for j in 0..<blocks { users[j] &+= Int(acc.load(fromByteOffset: j, as: UInt8.self)) }
                        acc.initializeMemory(as: UInt8.self, repeating: 0, count: blocks)
                    }
                }
            }
        }
        blockUsers = users
        wideUsers = wide > 1 ? wideCounts : users
        self.runs = runs
        deriveTotals()
    }

    /// Adds the counts of `other` (the same mask, a disjoint range of rows).
    mutating func merge(_ other: MaskStats) {
        for j in 0..<blocks { blockUsers[j] &+= other.blockUsers[j] }
        if wideBlocksPerGroup > 1 {
            for i in 0..<wideUsers.count { wideUsers[i] &+= other.wideUsers[i] }
        } else {
            wideUsers = blockUsers
        }
        runs &+= other.runs
        deriveTotals()
    }

    private mutating func deriveTotals() {
        let lastWidth = units - (blocks - 1) * granularity
        let activeBlocks = blockUsers.reduce(0, +)
        let lastActive = blocks > 0 ? blockUsers[blocks - 1] : 0
        activePairs = activeBlocks * granularity - lastActive * (granularity - lastWidth)
        // Runs are whole blocks: with G a multiple of 4 only the partial last block leaves single rows;
        // otherwise estimate 1.5 leftover rows per run (run lengths mod 4 of short random runs), capped by the pairs.
        leftoverRows = granularity % 4 == 0 ? lastActive * (lastWidth % 4) : min(activePairs, runs * 3 / 2)
    }

    func blockWidth(_ j: Int) -> Int { min((j + 1) * granularity, units) - j * granularity }
}

/// Calls `body(start, length)` for each maximal run of active units of one sample's mask row, in order.
@inline(__always)
func forEachRun(_ row: UnsafePointer<UInt8>, blocks: Int, granularity g: Int, units: Int, _ body: (Int, Int) -> Void) {
    var j = 0
    while j < blocks {
        if row[j] == 0 { j += 1; continue }
        var j2 = j + 1
        while j2 < blocks && row[j2] != 0 { j2 += 1 }
        let s = j * g
        body(s, min(j2 * g, units) - s)
        j = j2
    }
}

/// Unit-major grouping: `blocksPerGroup` adjacent blocks form one group (so narrow blocks still fill a
/// micro-tile's NR columns); a group's rows are the samples that use any of its blocks, in sample order.
/// Rows that use only some blocks of a group compute the others too — those MACs are `wasted`.
struct UnitGroups {
    let blocksPerGroup: Int
    var lo: [Int] = []
    var hi: [Int] = []
    var rows: [Int32] = []
    var rowOffsets: [Int] = [0]
    /// Σ rows × width: the MACs per input feature these groups execute.
    var computedPairs = 0

    /// `users[i]`: samples using any block of group i (`MaskStats.blockUsers` or `.wideUsers`). The row lists are laid
    /// out from these counts and filled in one pass over the mask's active blocks (a counting sort): appending sample
    /// by sample per group, with the arrays growing, was 4 % of a per-sample layer at B = 32, r ≈ 0.1.
    /// With an executor and a large mask, each worker fills the lists of its own range of groups (reading only those
    /// groups' columns of the mask), so the workers write disjoint stretches of `rows`: serial, the fill was 10–12 % of
    /// a one-thread dot-product layer (B = 256, H = 2048, G = 1), far more of a 16-thread one. (Splitting by samples
    /// instead had neighbouring workers writing the same lines of each group's list: 12 % slower on 2 threads.)
    init(_ mask: GateMask, blocksPerGroup: Int, users: [Int], executor: ParallelExecutor? = nil) {
        self.blocksPerGroup = blocksPerGroup
        let blocks = mask.blockCount, g = mask.granularity
        precondition(users.count == (blocks + blocksPerGroup - 1) / blocksPerGroup, "one user count per group")
        var next = [Int](repeating: 0, count: users.count)
        var total = 0
        let groups = users.reduce(0) { $0 + ($1 > 0 ? 1 : 0) }
        lo.reserveCapacity(groups); hi.reserveCapacity(groups); rowOffsets.reserveCapacity(groups + 1)
        for i in 0..<users.count where users[i] > 0 {
            next[i] = total; total += users[i]
            let l = i * blocksPerGroup * g, h = min((i + 1) * blocksPerGroup * g, mask.units)
            lo.append(l); hi.append(h); rowOffsets.append(total)
            computedPairs += users[i] * (h - l)
        }
        rows = [Int32](repeating: 0, count: total)
        let bpg = blocksPerGroup, batch = mask.batch
        let parallel = executor.map { $0.workerCount > 1 && batch * blocks >= SparseEngine.parallelMaskFlags } ?? false
        guard total > 0 else { return }
        rows.withUnsafeMutableBufferPointer { rows in
            next.withUnsafeMutableBufferPointer { next in
                mask.bits.withUnsafeBufferPointer { bits in
                    let rows = rows.baseAddress!, next = next.baseAddress!
                    // Groups g0..<g1, a tile of ~64 blocks at a time: the tile's columns of every sample row, in sample
                    // order, so the lists being written stay in L1 (row by row over all groups, each entry went to
                    // another list: 10 % of a dot-product layer at B = 256, H = 2048, G = 1 on one core).
                    let tileGroups = max(1, 64 / bpg)
                    let fill: (Range<Int>) -> Void = { range in
                        var t0 = range.lowerBound
                        while t0 < range.upperBound {
                            let t1 = min(t0 + tileGroups, range.upperBound)
                            let j0 = t0 * bpg, j1 = min(t1 * bpg, blocks)
                            for b in 0..<batch {
                                forEachActiveGroup(bits.baseAddress! + b * blocks + j0, blocks: j1 - j0, blocksPerGroup: bpg) { local in
                                    let gi = t0 + local
                                    rows[next[gi]] = Int32(b); next[gi] &+= 1
                                }
                            }
                            t0 = t1
                        }
                    }
                    if parallel, let executor {
                        executor.parallelFor(users.count, grain: tileGroups) { range, _ in fill(range) }
                    } else {
                        fill(0..<users.count)
                    }
                }
            }
        }
    }
    var count: Int { lo.count }
}

/// Calls `body(gi)` once for each group of `blocksPerGroup` adjacent blocks (the last one partial) that holds an active
/// block of one sample's mask row, in order. It skips to the next group after each hit and divides only then: a
/// division per active block cost 15 % of a per-sample G = 1 layer at r = 0.5 (32-block groups, 256 of 512 active).
@inline(__always)
func forEachActiveGroup(_ row: UnsafePointer<UInt8>, blocks: Int, blocksPerGroup: Int, _ body: (Int) -> Void) {
    if blocksPerGroup == 1 { forEachActiveBlock(row, blocks: blocks, body); return }
    let raw = UnsafeRawPointer(row)
    // Groups of NR / G blocks are a power of two for power-of-two G: a shift, not a division.
    let shift = blocksPerGroup.nonzeroBitCount == 1 ? blocksPerGroup.trailingZeroBitCount : -1
    var q = 0
    while q < blocks {
        var hit = -1
        while q &+ 8 <= blocks {
            let word = raw.loadUnaligned(fromByteOffset: q, as: UInt64.self)
            if word != 0 { hit = q &+ word.trailingZeroBitCount >> 3; break }
            q &+= 8
        }
        if hit < 0 {
            while q < blocks { if row[q] != 0 { hit = q; break }; q &+= 1 }
            if hit < 0 { return }
        }
        let gi = shift >= 0 ? hit >> shift : hit / blocksPerGroup
        body(gi)
        q = (gi &+ 1) &* blocksPerGroup
    }
}

/// Calls `body(j)` for each active block of one sample's mask row (bytes 0/1), in order; 64 blocks are tested at a
/// time (one SSE2 compare-and-movemask per 16), then eight: at r ≈ 0.1 a word of eight flags is zero about half the
/// time, and the branch per word mispredicted so often that filling unit-major lists (B = 256, H = 2048, G = 1) took
/// 12 % of a dot-product layer.
@inline(__always)
func forEachActiveBlock(_ row: UnsafePointer<UInt8>, blocks: Int, _ body: (Int) -> Void) {
    let raw = UnsafeRawPointer(row)
    var q = 0
    while q &+ 64 <= blocks {
        var bitsSet = dg_nonzero_bytes64(raw + q)
        while bitsSet != 0 {
            body(q &+ bitsSet.trailingZeroBitCount)
            bitsSet &= bitsSet &- 1
        }
        q &+= 64
    }
    while q &+ 8 <= blocks {
        var word = raw.loadUnaligned(fromByteOffset: q, as: UInt64.self)
        while word != 0 {
            body(q &+ word.trailingZeroBitCount >> 3)
            word &= word &- 1
        }
        q &+= 8
    }
    while q < blocks {
        if row[q] != 0 { body(q) }
        q &+= 1
    }
}

extension SparseEngine {
    // MARK: - Per-sample, layer 1

    func perSampleLayer1(x: UnsafePointer<Float>, batch: Int, d: Int, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                         h: Int, mask: GateMask, relu: Bool, strategy: PerSampleStrategy, packed: PackedWeights?,
                         out: UnsafeMutablePointer<Float>) -> SparseReport {
        let g = mask.granularity, blocks = mask.blockCount, nr = gemm.kernels.nr
        let layout = unitMajorLayout(granularity: g, packed: packed != nil)
        let wide = layout.wide
        let stats = maskStats(mask, wideBlocksPerGroup: wide)
        let pairs = stats.activePairs
        let maskBytes = batch * blocks
        let denseMACs = batch * h * d
        let useful = KernelCost(macs: pairs * d, bytesRead: 4 * (batch * d + pairs * d), bytesWritten: 4 * pairs)
        var predicted: PerSamplePredictions? = nil
        var chosen = strategy
        // Unit-major grouping (exact blocks, or `wide` adjacent blocks per group to fill NR columns): the model picks.
        var blocksPerGroup = 1
        var dots = false
        var hotUsers = Int.max  // hotColdSplit: blocks with at least this many users run as the shared GEMM
        if strategy == .auto || strategy == .unitMajor {
            let model = costModel
            let kernel = unitMajorKernel
            let grouped = kernel == .dots ? (exact: Double.infinity, wide: Double.infinity)
                : predictUnitMajorGroupings(model, stats, layout, d: d)
            let tExact = grouped.exact, tWide = grouped.wide
            // Forced to the GEMMs, or a model calibrated before the dot kernel existed: never dots.
            let tDots = kernel == .gemm ? .infinity : predictUnitDots1(model, stats, d: d)
            dots = kernel == .dots || tDots < min(tExact, tWide)
            blocksPerGroup = !dots && tWide < tExact ? wide : 1
            if strategy == .auto {
                let tDense = predictDense1(model, batch: batch, h: h, d: d, packedB: packed != nil)
                let tUnit = min(tExact, tWide, tDots)
                let tSample = predictSampleMajor1(model, stats, d: d)
                let split = predictHotCold1(model, stats, d: d)
                predicted = PerSamplePredictions(denseThenMask: tDense, unitMajor: tUnit, sampleMajor: tSample,
                                                 hotColdSplit: split.seconds)
                let sparseBest = min(tUnit, tSample, split.seconds)
                if sparseBest >= autoMargin * tDense {
                    chosen = .denseThenMask
                } else if split.seconds < min(tUnit, tSample) {
                    chosen = .hotColdSplit
                    hotUsers = split.hotUsers
                } else {
                    chosen = tUnit <= tSample ? .unitMajor : .sampleMajor
                }
            }
        }
        if strategy == .hotColdSplit {
            hotUsers = hotBlockUsers ?? predictHotCold1(costModel, stats, d: d, properSplit: true).hotUsers
        }

        switch chosen {
        case .auto, .denseThenMask:
            _ = denseLayer1(x: x, batch: batch, d: d, w: w, h: h, epilogue: Epilogue(bias: bias, relu: relu),
                            packed: packed, out: out)
            applyMask(out, mask: mask)
            // One dense GEMM reads x and W once each (not a weight row per active pair).
            var denseUseful = useful
            denseUseful.bytesRead = 4 * (batch * d + h * d)
            let cost = CostBreakdown(useful: denseUseful,
                                     overhead: KernelCost(bytesRead: maskBytes, bytesWritten: 4 * (batch * h - pairs)),
                                     wasted: KernelCost(macs: denseMACs - pairs * d))
            return SparseReport(strategy: .denseThenMask, cost: cost, denseMACs: denseMACs, activePairs: pairs,
                                predictions: predicted)

        case .hotColdSplit:
            return hotColdLayer1(x: x, batch: batch, d: d, w: w, bias: bias, h: h, mask: mask, stats: stats, relu: relu,
                                 packed: packed, out: out, useful: useful, predicted: predicted, hotUsers: hotUsers)

        case .unitMajor where dots:
            return unitDotsLayer1(x: x, batch: batch, d: d, w: w, bias: bias, h: h, mask: mask, stats: stats, relu: relu,
                                  out: out, useful: useful, predicted: predicted)

        case .unitMajor:
            let groups = UnitGroups(mask, blocksPerGroup: blocksPerGroup,
                                    users: blocksPerGroup == 1 ? stats.blockUsers : stats.wideUsers, executor: gemm.executor)
            let usePacked = blocksPerGroup == 1 ? layout.exactAligned : layout.wideAligned
            let useHalf = blocksPerGroup == 1 && layout.halfAligned
            groups.rows.withUnsafeBufferPointer { rows in
                let body: (Range<Int>, GemmEngine, AlignedBuffer) -> Void = { range, engine, buffer in
                    for gi in range {
                        let lo = groups.lo[gi], width = groups.hi[gi] - lo
                        let rowMap = rows.baseAddress! + groups.rowOffsets[gi]
                        let m = groups.rowOffsets[gi + 1] - groups.rowOffsets[gi]
                        // Into a compact tile (full micro-tiles store directly), then scatter whole rows:
                        // the engine's scattered-C path stores element by element on every KC block.
                        let tile = buffer.reserve(m * width)
                        let aOp = MatrixOperand(base: x, rowStride: d, colStride: 1, rowIndex: rowMap)
                        if useHalf {
                            engine.gemmHalfPanel(m: m, a: aOp, packed: packed!, firstUnit: lo,
                                                 c: OutputOperand(base: tile, rowStride: width), epilogue: Epilogue(bias: bias, relu: relu))
                        } else if usePacked {
                            // Output columns are physical units: shift the tile's base so unit `lo` lands at column 0.
                            engine.gemm(m: m, a: aOp, packed: packed!, panelRange: (lo / nr)..<((groups.hi[gi] + nr - 1) / nr),
                                        c: OutputOperand(base: tile - lo, rowStride: width),
                                        epilogue: Epilogue(bias: bias, relu: relu))
                        } else {
                            engine.gemm(m: m, n: width, k: d, a: aOp, b: .rowMajor(w + lo * d, ld: d, transposed: true),
                                        c: OutputOperand(base: tile, rowStride: width),
                                        epilogue: Epilogue(bias: bias.map { $0 + lo }, relu: relu))
                        }
                        for i in 0..<m { (out + Int(rowMap[i]) * h + lo).update(from: tile + i * width, count: width) }
                    }
                }
                if workerCount > 1 && groups.count >= 2 && groups.computedPairs * d >= gemm.parallelThresholdMACs {
                    // Groups differ in size (samples per block): runs of adjacent groups (neighbouring blocks share
                    // panels) are work-stolen, about `WorkItems.itemsPerWorker` per worker (a static share each
                    // waited for the slowest worker, and fewer groups than workers ran on one thread).
                    gemm.executor.parallelForStealing(groups.count, unit: 1, blocksPerWorker: WorkItems.itemsPerWorker) { range, slot in
                        body(range, self.slotEngines[slot], self.slotScratch[slot])
                    }
                } else {
                    body(0..<groups.count, gemm, slotScratch[0])
                }
            }
            // Rows outside a group's union were never written, and union rows hold values for blocks they do not use.
            applyMask(out, mask: mask)
            let executed = groups.computedPairs * d
            // Each group's GEMM reads its weight rows once (x rows are charged to the gather overhead).
            var groupUseful = useful
            groupUseful.bytesRead = 4 * (0..<groups.count).reduce(0) { $0 + (groups.hi[$1] - groups.lo[$1]) * d }
            let cost = CostBreakdown(
                useful: groupUseful,
                overhead: KernelCost(bytesRead: maskBytes + 4 * groups.rows.count * d,
                                     bytesWritten: 4 * (groups.rows.count + batch * h - pairs)),
                wasted: KernelCost(macs: executed - pairs * d))
            return SparseReport(strategy: .unitMajor, cost: cost, denseMACs: denseMACs, activePairs: pairs,
                                predictions: predicted)

        case .sampleMajor:
            let gemv = gemm.kernels.gemv, indexed = gemm.kernels.indexedGemv
            mask.bits.withUnsafeBufferPointer { bits in
                let body: (Range<Int>, Int) -> Void = { range, _ in
                    var units = [Int32](repeating: 0, count: h)
                    for b in range {
                        let xb = x + b * d, ob = out + b * h
                        let row = bits.baseAddress! + b * blocks
                        var runs = 0, active = 0
                        forEachRun(row, blocks: blocks, granularity: g, units: h) { s, len in
                            for u in s..<(s + len) { units[active + u - s] = Int32(u) }
                            runs += 1; active += len
                        }
                        if runs * 4 > active {
                            // Short runs (unit masks): four listed rows at a time, scattered into a zeroed row.
                            ob.update(repeating: 0, count: h)
                            units.withUnsafeBufferPointer { indexed(active, d, w, d, $0.baseAddress!, xb, ob, true, bias, relu) }
                            continue
                        }
                        var next = 0
                        forEachRun(row, blocks: blocks, granularity: g, units: h) { s, len in
                            if s > next { (ob + next).update(repeating: 0, count: s - next) }
                            gemv(len, d, w + s * d, d, xb, ob + s, 0, bias.map { $0 + s }, relu)
                            next = s + len
                        }
                        if h > next { (ob + next).update(repeating: 0, count: h - next) }
                    }
                }
                overSampleBlocks(batch, unit: 1, parallel: pairs * d >= gemm.parallelThresholdMACs, body)
            }
            let cost = CostBreakdown(
                useful: useful,
                overhead: KernelCost(bytesRead: maskBytes, bytesWritten: 4 * (batch * h - pairs)))
            return SparseReport(strategy: .sampleMajor, cost: cost, denseMACs: denseMACs, activePairs: pairs,
                                predictions: predicted)
        }
    }

    /// `MaskStats` of a per-sample mask, its rows split over the workers when the mask is large: counted on the
    /// caller it was the serial part of a per-sample layer (1.7 % of a dense-then-mask layer at B = 256, H = 2048 on
    /// one Zen 5 core; at 16 threads on the Xeon VM dense-then-mask took 1.4–1.9× the dense layer).
    func maskStats(_ mask: GateMask, wideBlocksPerGroup bpg: Int) -> MaskStats {
        let bytes = mask.batch * mask.blockCount
        guard workerCount > 1 && mask.batch >= 2 && bytes >= Self.parallelMaskFlags else {
            return MaskStats(mask, wideBlocksPerGroup: bpg)
        }
        let parts = min(workerCount, mask.batch)
        var partial = [MaskStats?](repeating: nil, count: parts)
        partial.withUnsafeMutableBufferPointer { p in
            gemm.executor.parallelFor(mask.batch, grain: (mask.batch + parts - 1) / parts) { rows, slot in
                p[slot] = MaskStats(mask, wideBlocksPerGroup: bpg, rows: rows)
            }
        }
        let counted = partial.compactMap { $0 }
        var total = counted[0]
        for other in counted.dropFirst() { total.merge(other) }
        return total
    }

    /// Masks of at least this many block flags are walked on the workers — statistics and unit-major lists (about
    /// 10 µs of counting on one core).
    static let parallelMaskFlags = 1 << 16

    /// Per-sample (b) as dot products: each block's weight rows against just the samples that use it (one
    /// `rowSamplesGemv` call per active block), written in place; the inactive entries are zeroed after.
    func unitDotsLayer1(x: UnsafePointer<Float>, batch: Int, d: Int, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                        h: Int, mask: GateMask, stats: MaskStats, relu: Bool, out: UnsafeMutablePointer<Float>,
                        useful: KernelCost, predicted: PerSamplePredictions?) -> SparseReport {
        let groups = UnitGroups(mask, blocksPerGroup: 1, users: stats.blockUsers, executor: gemm.executor)
        runUnitDots(groups, x: x, d: d, w: w, bias: bias, h: h, relu: relu, out: out, pairs: stats.activePairs)
        applyMask(out, mask: mask)
        let pairs = stats.activePairs
        // Every active unit's weight row is read once; the samples' rows once per block that uses them.
        var rowsUseful = useful
        rowsUseful.bytesRead = 4 * (0..<groups.count).reduce(0) { $0 + (groups.hi[$1] - groups.lo[$1]) * d }
        let cost = CostBreakdown(
            useful: rowsUseful,
            overhead: KernelCost(bytesRead: mask.batch * mask.blockCount + 4 * groups.rows.count * d,
                                 bytesWritten: 4 * (batch * h - pairs)))
        return SparseReport(strategy: .unitMajorDots, cost: cost, denseMACs: batch * h * d, activePairs: pairs,
                            predictions: predicted)
    }

    /// The dot kernel over `groups` (each block's weight rows against the samples listed for it), written in place;
    /// `pairs` (active sample-unit pairs) decides whether the workers share it.
    func runUnitDots(_ groups: UnitGroups, x: UnsafePointer<Float>, d: Int, w: UnsafePointer<Float>,
                     bias: UnsafePointer<Float>?, h: Int, relu: Bool, out: UnsafeMutablePointer<Float>, pairs: Int) {
        let kernel = gemm.kernels.rowSamplesGemv
        groups.rows.withUnsafeBufferPointer { rows in
            let body: (Range<Int>) -> Void = { range in
                for gi in range {
                    let lo = groups.lo[gi]
                    if gi + 1 < range.upperBound {
                        // The next block's weight rows, a line at a time, while this one computes.
                        let next = UnsafeRawPointer(w + groups.lo[gi + 1] * d)
                        var line = 0
                        let bytes = (groups.hi[gi + 1] - groups.lo[gi + 1]) * d * 4
                        while line < bytes { dg_prefetch(next + line); line &+= 64 }
                    }
                    kernel(groups.hi[gi] - lo, groups.rowOffsets[gi + 1] - groups.rowOffsets[gi], d, w + lo * d, d,
                           rows.baseAddress! + groups.rowOffsets[gi], x, d, out + lo, h, bias.map { $0 + lo }, relu)
                }
            }
            if workerCount > 1 && groups.count >= 2 && pairs * d >= gemm.parallelThresholdMACs {
                // Work items are stripes of 16 units (one cache line of an output row): each (sample, unit) result is a
                // single float, and items cut at arbitrary groups had neighbouring workers writing the same lines —
                // at 16 threads on the Xeon VM the layer scaled 3.8× over one thread where sample-major scaled 10.6×.
                let stripe = 16
                let stripes = (h + stripe - 1) / stripe
                var firstGroup = [Int](repeating: groups.count, count: stripes + 1)
                var gi = 0
                for st in 0..<stripes {
                    while gi < groups.count && groups.lo[gi] < st * stripe { gi += 1 }
                    firstGroup[st] = gi
                }
                gemm.executor.parallelForStealing(stripes, unit: 1, blocksPerWorker: WorkItems.itemsPerWorker) { range, _ in
                    body(firstGroup[range.lowerBound]..<firstGroup[range.upperBound])
                }
            } else {
                body(0..<groups.count)
            }
        }
    }

    /// Per-sample `hotColdSplit`: the blocks with at least `hotUsers` users run as one shared-mask GEMM over the whole
    /// batch (full width, every other column written 0), then the other blocks as unit-major dot products over just
    /// their samples, and a mask pass zeroes the hot columns' inactive samples. Learned gates leave a
    /// few units on for most inputs and most units for few: one trained model here (r = 0.14, 512 units) had 61 units
    /// with ≥ 50 % users holding 64 % of the active pairs, and half its units at ≤ 2 % — a GEMM wastes little on the
    /// first kind and the dots waste nothing on the second.
    func hotColdLayer1(x: UnsafePointer<Float>, batch: Int, d: Int, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                       h: Int, mask: GateMask, stats: MaskStats, relu: Bool, packed: PackedWeights?,
                       out: UnsafeMutablePointer<Float>, useful: KernelCost, predicted: PerSamplePredictions?,
                       hotUsers: Int) -> SparseReport {
        let g = mask.granularity
        var hot: [Int32] = []
        var hotPairs = 0
        var coldBlocks = [UInt8](repeating: 1, count: mask.blockCount), coldUsers = stats.blockUsers
        for (j, users) in stats.blockUsers.enumerated() where users >= hotUsers {
            let lo = j * g, hi = min(lo + g, h)
            for u in lo..<hi { hot.append(Int32(u)) }
            hotPairs += users * (hi - lo)
            coldBlocks[j] = 0; coldUsers[j] = 0
        }
        let shared = hot.withUnsafeBufferPointer { units in
            sharedLayer1(x: x, batch: batch, d: d, w: w, bias: bias, h: h, units: units, relu: relu, layout: .scattered,
                         packed: packed, out: out, denseMACs: batch * h * d)
        }
        let pairs = stats.activePairs
        var coldRows = 0
        if pairs > hotPairs {
            // The cold blocks' lists from a copy of the mask without the hot columns: listing the hot blocks' samples
            // too (most entries) took 6 % of a trained model's forward.
            let groups = UnitGroups(mask.keepingBlocks(coldBlocks), blocksPerGroup: 1, users: coldUsers, executor: gemm.executor)
            runUnitDots(groups, x: x, d: d, w: w, bias: bias, h: h, relu: relu, out: out, pairs: pairs - hotPairs)
            coldRows = groups.rows.count
        }
        applyMask(out, mask: mask)
        let executed = (batch * hot.count + pairs - hotPairs) * d
        let overhead = shared.cost.overhead + KernelCost(bytesRead: 2 * mask.batch * mask.blockCount + 4 * coldRows * d,
                                                         bytesWritten: mask.batch * mask.blockCount + 4 * (batch * h - pairs))
        let cost = CostBreakdown(useful: useful, overhead: overhead, wasted: KernelCost(macs: executed - pairs * d))
        return SparseReport(strategy: .hotColdSplit, cost: cost, denseMACs: batch * h * d, activePairs: pairs,
                            predictions: predicted)
    }

    /// Writes 0 into every inactive (sample, unit) entry of a batch × units output.
    func applyMask(_ out: UnsafeMutablePointer<Float>, mask: GateMask) {
        let blocks = mask.blockCount, g = mask.granularity, h = mask.units
        mask.bits.withUnsafeBufferPointer { bits in
            // Split over samples like the GEMM before it, or the pass would be the serial tail of a parallel layer.
            let parallel = mask.batch * h * 64 >= gemm.parallelThresholdMACs
            let body: (Range<Int>, Int) -> Void = { range, _ in for b in range {
                let row = out + b * h, flags = bits.baseAddress! + b * blocks
                if g == 1 {
                    // Bitwise AND with an all-ones/all-zeros word: branch-free and vectorisable (and NaN-safe).
                    let raw = UnsafeMutableRawPointer(row).assumingMemoryBound(to: UInt32.self)
                    for u in 0..<h { raw[u] &= 0 &- UInt32(flags[u]) }
                } else {
                    // One fill per gap between active blocks, found eight blocks a word (a fill per inactive block
                    // was 7 % of a per-sample layer at B = 32, G = 16, r ≈ 0.1).
                    var next = 0
                    forEachActiveBlock(flags, blocks: blocks) { j in
                        let lo = j * g
                        if lo > next { (row + next).update(repeating: 0, count: lo - next) }
                        next = min(lo + g, h)
                    }
                    if h > next { (row + next).update(repeating: 0, count: h - next) }
                }
            } }
            overSampleBlocks(mask.batch, unit: 8, parallel: parallel, body)
        }
    }

    // MARK: - Per-sample, layer 2

    func perSampleLayer2(h hIn: UnsafePointer<Float>, batch: Int, units h: Int, v: UnsafePointer<Float>,
                         bias: UnsafePointer<Float>?, c: Int, mask: GateMask, strategy: PerSampleStrategy,
                         y: UnsafeMutablePointer<Float>) -> SparseReport {
        let g = mask.granularity, blocks = mask.blockCount
        let stats = maskStats(mask, wideBlocksPerGroup: 1)
        let pairs = stats.activePairs
        let maskBytes = batch * blocks
        let denseMACs = batch * h * c
        let useful = KernelCost(macs: pairs * c, bytesRead: 4 * (pairs + pairs * c), bytesWritten: 4 * batch * c)
        var predicted: PerSamplePredictions? = nil
        // The hot/cold split is a layer-1 strategy (the hot part is a shared-mask GEMM over N): here it asks the model.
        var chosen = strategy == .hotColdSplit ? .auto : strategy
        if chosen == .auto {
            let model = costModel
            let tDense = model.passSeconds(bytes: 8 * batch * h)
                + parallel(model.gemmSeconds(m: batch, n: c, k: h), tasks: batch * c * h >= gemm.parallelThresholdMACs ? workerCount : 1)
            var tUnit = 0.0
            for j in 0..<blocks { tUnit += model.gemmSeconds(m: stats.blockUsers[j], n: c, k: stats.blockWidth(j)) * model.gatherFactor }
            // Layer 2 runs are the K dimension of each gemv (C rows): no leftover-row penalty beyond C's own.
            let tSample = parallel(Double(stats.runs) * model.gemvSeconds(rows: c, k: 1)
                                   + Double(pairs) * (model.gemvSeconds(rows: c, k: 2) - model.gemvSeconds(rows: c, k: 1)),
                                   tasks: batch)
            predicted = PerSamplePredictions(denseThenMask: tDense, unitMajor: tUnit, sampleMajor: tSample, hotColdSplit: .infinity)
            chosen = min(tUnit, tSample) < autoMargin * tDense ? (tUnit <= tSample ? .unitMajor : .sampleMajor) : .denseThenMask
        }
        let biasValue: (Int) -> Float = { j in bias.map { $0[j] } ?? 0 }
        switch chosen {
        case .auto, .denseThenMask, .hotColdSplit:
            // Inactive inputs must not leak in: copy h with them zeroed, then the dense product.
            let hm = maskedInput.reserve(batch * h)
            hm.update(from: hIn, count: batch * h)
            applyMask(hm, mask: mask)
            gemm.gemm(m: batch, n: c, k: h, a: .rowMajor(UnsafePointer(hm), ld: h), b: .rowMajor(v, ld: h, transposed: true),
                      c: OutputOperand(base: y, rowStride: c), epilogue: Epilogue(bias: bias))
            let cost = CostBreakdown(useful: useful,
                                     overhead: KernelCost(bytesRead: maskBytes + 4 * batch * h, bytesWritten: 4 * batch * h),
                                     wasted: KernelCost(macs: denseMACs - pairs * c))
            return SparseReport(strategy: .denseThenMask, cost: cost, denseMACs: denseMACs, activePairs: pairs,
                                predictions: predicted)
        case .unitMajor:
            let exact = UnitGroups(mask, blocksPerGroup: 1, users: stats.blockUsers, executor: gemm.executor)
            for b in 0..<batch { for j in 0..<c { y[b * c + j] = biasValue(j) } }
            // Groups accumulate into the same rows of y, so they run one after another (each GEMM may split).
            exact.rows.withUnsafeBufferPointer { rows in
                for gi in 0..<exact.count {
                    let lo = exact.lo[gi]
                    let rowMap = rows.baseAddress! + exact.rowOffsets[gi]
                    let m = exact.rowOffsets[gi + 1] - exact.rowOffsets[gi]
                    let tile = slotScratch[0].reserve(m * c)
                    gemm.gemm(m: m, n: c, k: exact.hi[gi] - lo,
                              a: MatrixOperand(base: hIn + lo, rowStride: h, colStride: 1, rowIndex: rowMap),
                              b: .rowMajor(v + lo, ld: h, transposed: true),
                              c: OutputOperand(base: tile, rowStride: c))
                    for i in 0..<m {
                        let yr = y + Int(rowMap[i]) * c, tr = tile + i * c
                        for j in 0..<c { yr[j] += tr[j] }
                    }
                }
            }
            let cost = CostBreakdown(useful: useful,
                                     overhead: KernelCost(bytesRead: maskBytes, bytesWritten: 4 * exact.rows.count))
            return SparseReport(strategy: .unitMajor, cost: cost, denseMACs: denseMACs, activePairs: pairs,
                                predictions: predicted)
        case .sampleMajor:
            let gemv = gemm.kernels.gemv
            mask.bits.withUnsafeBufferPointer { bits in
                let body: (Range<Int>, Int) -> Void = { range, _ in
                    for b in range {
                        let yb = y + b * c, hb = hIn + b * h
                        for j in 0..<c { yb[j] = biasValue(j) }
                        forEachRun(bits.baseAddress! + b * blocks, blocks: blocks, granularity: g, units: h) { s, len in
                            gemv(c, len, v + s, h, hb + s, yb, 1, nil, false)
                        }
                    }
                }
                if workerCount > 1 && pairs * c >= gemm.parallelThresholdMACs {
                    gemm.executor.parallelFor(batch, grain: 1, body)
                } else {
                    body(0..<batch, 0)
                }
            }
            let cost = CostBreakdown(useful: useful, overhead: KernelCost(bytesRead: maskBytes))
            return SparseReport(strategy: .sampleMajor, cost: cost, denseMACs: denseMACs, activePairs: pairs,
                                predictions: predicted)
        }
    }

    // MARK: - Predictions (seconds) from the calibrated model

    func parallel(_ t: Double, tasks: Int) -> Double { t / Double(max(1, min(tasks, workerCount))) }

    func predictDense1(_ m: SparseCostModel, batch: Int, h: Int, d: Int, packedB: Bool) -> Double {
        let tasks = batch * h * d >= gemm.parallelThresholdMACs ? workerCount : 1
        // Unscaled on purpose (see `PerSampleScaling`).
        return parallel(m.gemmSeconds(m: batch, n: h, k: d, packedB: packedB), tasks: tasks) + m.passSeconds(bytes: 4 * batch * h)
    }

    /// How unit-major groups of G-unit blocks meet the micro-kernel's NR-wide panels: `wide` adjacent blocks fill NR
    /// columns; with pre-packed weights, exact blocks start on panel boundaries (G a multiple of NR) or run on half
    /// panels (G = NR/2 where the ISA has that kernel: AVX-512, G = 16), wide groups when they span whole panels.
    struct UnitMajorLayout {
        let wide: Int
        let exactAligned: Bool
        let halfAligned: Bool
        let wideAligned: Bool
    }

    func unitMajorLayout(granularity g: Int, packed: Bool) -> UnitMajorLayout {
        let nr = gemm.kernels.nr
        let wide = g < nr ? max(1, nr / g) : 1
        return UnitMajorLayout(wide: wide, exactAligned: packed && g % nr == 0,
                               halfAligned: packed && gemm.hasHalfPanelKernel && g == nr / 2,
                               wideAligned: packed && (wide * g) % nr == 0)
    }

    /// Predicted seconds of the grouped-GEMM unit-major strategy on exact blocks and on wide groups (∞ without one).
    func predictUnitMajorGroupings(_ m: SparseCostModel, _ s: MaskStats, _ layout: UnitMajorLayout, d: Int)
        -> (exact: Double, wide: Double) {
        let nr = gemm.kernels.nr
        let exact = predictUnitMajor1(m, s, wide: false, packedB: layout.exactAligned || layout.halfAligned, d: d,
                                      panelWidth: layout.halfAligned ? nr / 2 : nr)
        let wide = layout.wide > 1 ? predictUnitMajor1(m, s, wide: true, packedB: layout.wideAligned, d: d) : .infinity
        return (exact, wide)
    }

    func predictUnitMajor1(_ m: SparseCostModel, _ s: MaskStats, wide: Bool, packedB: Bool, d: Int,
                           panelWidth: Int? = nil) -> Double {
        // Groups of one width and user count cost the same, so the model is evaluated once per user count (≤ B + 1
        // of them) for the full-width groups and once for the last: a call per group (2048 at H = 2048, G = 1) was a
        // serial stretch of every per-sample call.
        let users = wide ? s.wideUsers : s.blockUsers
        let width = wide ? s.wideBlocksPerGroup * s.granularity : s.granularity
        var perCount = [Int](repeating: 0, count: s.batch + 1)
        for gi in 0..<(users.count - 1) { perCount[users[gi]] &+= 1 }
        let lastWidth = s.units - (users.count - 1) * width
        let panel = wide ? nil : panelWidth
        var t = 0.0
        for c in 1..<perCount.count where perCount[c] > 0 {
            t += Double(perCount[c]) * m.gemmSeconds(m: c, n: width, k: d, packedB: packedB, panelWidth: panel)
        }
        if let last = users.last, last > 0 { t += m.gemmSeconds(m: last, n: lastWidth, k: d, packedB: packedB, panelWidth: panel) }
        let groups = users.count - perCount[0] - (users.last == 0 ? 1 : 0)
        return (parallel(t * m.gatherFactor, tasks: groups) + m.passSeconds(bytes: 4 * s.batch * s.units))
            * m.scalingFactor(.unitMajor, batch: s.batch)
    }

    func predictUnitDots1(_ m: SparseCostModel, _ s: MaskStats, d: Int) -> Double {
        let groups = s.blockUsers.reduce(0) { $0 + ($1 > 0 ? 1 : 0) }
        let blockPairs = s.blockUsers.reduce(0, +)
        // Whole blocks (the partial last block counted whole: its users are few next to the others').
        let t = m.unitDotsSeconds(pairs: blockPairs, rows: s.granularity, k: d, xBytes: 4 * s.batch * d)
        return (parallel(t, tasks: groups) + m.passSeconds(bytes: 4 * s.batch * s.units))
            * m.scalingFactor(.unitMajorDots, batch: s.batch)
    }

    /// Predicted seconds of `hotColdSplit` at its best threshold, and that threshold (blocks with at least `hotUsers`
    /// users go to the shared GEMM): the hot GEMM over the batch at the shared path's predicted speed, the cold blocks'
    /// pairs at the dot kernel's, plus the zero fill and mask pass. A block is worth running hot once its users pass
    /// about B × (GEMM / dot seconds per MAC), and the total is lowest near that count, so only thresholds around it
    /// (and "every used block") are predicted: scanning every user count cost ~2 % of a 24 µs layer.
    /// `properSplit` keeps both parts non-empty where the mask allows it (a forced split, so both paths run).
    func predictHotCold1(_ m: SparseCostModel, _ s: MaskStats, d: Int, properSplit: Bool = false)
        -> (seconds: Double, hotUsers: Int) {
        let batch = s.batch
        // Blocks and block pairs with at least c users, c = 0 … B.
        var blocksFrom = [Int](repeating: 0, count: batch + 2), pairsFrom = [Int](repeating: 0, count: batch + 2)
        for c in s.blockUsers { blocksFrom[c] &+= 1 }
        for c in stride(from: batch, through: 0, by: -1) {
            pairsFrom[c] = pairsFrom[c + 1] + c * blocksFrom[c]
            blocksFrom[c] += blocksFrom[c + 1]
        }
        let usedBlocks = blocksFrom[1], allPairs = pairsFrom[1]
        let dotMAC = m.dotSecondsPerMAC(xBytes: 4 * batch * d)
        let pivot = dotMAC.isFinite ? Double(batch) * m.gemmMAC / dotMAC : 0
        var thresholds = [1]
        for f in [0.5, 0.7, 1, 1.4, 2, 3] {
            let c = max(1, min(batch, Int((pivot * f).rounded())))
            if !thresholds.contains(c) { thresholds.append(c) }
        }
        let passes = 2 * m.passSeconds(bytes: 4 * batch * s.units)
        var best = (seconds: Double.infinity, hotUsers: Int.max), bestProper = best
        for c in thresholds where blocksFrom[c] > 0 {
            let hotUnits = min(s.units, blocksFrom[c] * s.granularity)
            let hotMACs = batch * hotUnits * d
            let coldGroups = usedBlocks - blocksFrom[c]
            let tHot = parallel(predictShared(m, batch: batch, active: hotUnits, features: d).seconds,
                                tasks: hotMACs >= gemm.parallelThresholdMACs ? workerCount : 1)
            let tCold = coldGroups == 0 ? 0
                : parallel(m.unitDotsSeconds(pairs: allPairs - pairsFrom[c], rows: s.granularity, k: d, xBytes: 4 * batch * d),
                           tasks: coldGroups) * m.scalingFactor(.unitMajorDots, batch: batch)
            let t = tHot + tCold + passes
            if t < best.seconds { best = (t, c) }
            if coldGroups > 0 && t < bestProper.seconds { bestProper = (t, c) }
        }
        return properSplit && bestProper.hotUsers != .max ? bestProper : best
    }

    func predictSampleMajor1(_ m: SparseCostModel, _ s: MaskStats, d: Int) -> Double {
        (parallel(Double(s.runs) * m.gemvCall + Double((s.activePairs - s.leftoverRows) * d) * m.gemvMAC
                  + Double(s.leftoverRows * d) * m.gemvRowMAC, tasks: s.batch)
            + m.passSeconds(bytes: 4 * (s.batch * s.units - s.activePairs)))
            * m.scalingFactor(.sampleMajor, batch: s.batch)
    }
}
