import DGRuntime

/// A per-sample mask analysed once per call: the runs of active units of each sample (sample-major)
/// and the active-pair count. O(batch × blocks), far below the layer's MACs.
struct PerSamplePlan {
    let batch: Int
    let units: Int
    let blocks: Int
    var activePairs = 0
    /// Runs of consecutive active units, flat; sample b owns runs runOffsets[b] ..< runOffsets[b+1].
    var runStart: [Int] = []
    var runLength: [Int] = []
    var runOffsets: [Int] = [0]
    /// Active (sample, block) pairs per block: how many samples use block j.
    var blockUsers: [Int]

    init(_ mask: GateMask) {
        batch = mask.batch; units = mask.units; blocks = mask.blockCount
        blockUsers = [Int](repeating: 0, count: blocks)
        let g = mask.granularity
        mask.bits.withUnsafeBufferPointer { bits in
            for b in 0..<batch {
                let row = bits.baseAddress! + b * blocks
                var open = false
                for j in 0..<blocks where row[j] != 0 {
                    let lo = j * g, len = min(lo + g, units) - lo
                    blockUsers[j] += 1
                    activePairs += len
                    if open && runStart[runStart.count - 1] + runLength[runLength.count - 1] == lo {
                        runLength[runLength.count - 1] += len
                    } else {
                        runStart.append(lo); runLength.append(len); open = true
                    }
                }
                runOffsets.append(runStart.count)
            }
        }
    }
}

/// Unit-major grouping: `blocksPerGroup` adjacent blocks form one group (so narrow blocks still fill a
/// micro-tile's NR columns); a group's rows are the samples that use any of its blocks.
/// Rows that use only some blocks of a group compute the others too — those MACs are `wasted`.
struct UnitGroups {
    let blocksPerGroup: Int
    var lo: [Int] = []
    var hi: [Int] = []
    var rows: [Int32] = []
    var rowOffsets: [Int] = [0]
    /// Σ rows × width: the MACs per input feature these groups execute.
    var computedPairs = 0

    init(_ mask: GateMask, blocksPerGroup: Int) {
        self.blocksPerGroup = blocksPerGroup
        let blocks = mask.blockCount, g = mask.granularity
        mask.bits.withUnsafeBufferPointer { bits in
            var j0 = 0
            while j0 < blocks {
                let j1 = min(j0 + blocksPerGroup, blocks)
                let first = rows.count
                for b in 0..<mask.batch {
                    let row = bits.baseAddress! + b * blocks
                    for j in j0..<j1 where row[j] != 0 { rows.append(Int32(b)); break }
                }
                if rows.count > first {
                    let l = j0 * g, h = min(j1 * g, mask.units)
                    lo.append(l); hi.append(h); rowOffsets.append(rows.count)
                    computedPairs += (rows.count - first) * (h - l)
                }
                j0 = j1
            }
        }
    }
    var count: Int { lo.count }
}

extension SparseEngine {
    // MARK: - Per-sample, layer 1

    func perSampleLayer1(x: UnsafePointer<Float>, batch: Int, d: Int, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                         h: Int, mask: GateMask, relu: Bool, strategy: PerSampleStrategy,
                         out: UnsafeMutablePointer<Float>) -> SparseReport {
        let plan = PerSamplePlan(mask)
        let pairs = plan.activePairs
        let maskBytes = batch * plan.blocks
        let denseMACs = batch * h * d
        let useful = KernelCost(macs: pairs * d, bytesRead: 4 * (batch * d + pairs * d), bytesWritten: 4 * pairs)
        var predicted: [String: Double] = [:]

        // Candidate groupings for unit-major: exact blocks, or enough adjacent blocks to fill NR columns.
        let nr = gemm.kernels.nr
        var groupings = [1]
        if mask.granularity < nr { groupings.append(max(1, nr / mask.granularity)) }
        var groups: UnitGroups? = nil
        var chosen = strategy
        if strategy == .auto || strategy == .unitMajor {
            // The grouping is part of the unit-major strategy: the model picks the cheaper one.
            let model = costModel
            var best = Double.infinity
            for bpg in groupings {
                let candidate = UnitGroups(mask, blocksPerGroup: bpg)
                let t = predictUnitMajor1(model, candidate, d: d, batch: batch, h: h)
                if groups == nil || t < best { best = t; groups = candidate }
            }
        }
        if strategy == .auto {
            let model = costModel
            let tDense = predictDense1(model, batch: batch, h: h, d: d)
            let tUnit = predictUnitMajor1(model, groups!, d: d, batch: batch, h: h)
            let tSample = predictSampleMajor1(model, plan, d: d, batch: batch, h: h)
            predicted = [SparseStrategy.denseThenMask.rawValue: tDense, SparseStrategy.unitMajor.rawValue: tUnit,
                         SparseStrategy.sampleMajor.rawValue: tSample]
            let sparseBest = min(tUnit, tSample)
            chosen = sparseBest < autoMargin * tDense ? (tUnit <= tSample ? .unitMajor : .sampleMajor) : .denseThenMask
        }

        switch chosen {
        case .auto, .denseThenMask:
            _ = denseLayer1(x: x, batch: batch, d: d, w: w, h: h, epilogue: Epilogue(bias: bias, relu: relu), out: out)
            zeroInactive(out: out, plan: plan, width: h)
            let cost = CostBreakdown(useful: useful,
                                     overhead: KernelCost(bytesRead: maskBytes, bytesWritten: 4 * (batch * h - pairs)),
                                     wasted: KernelCost(macs: denseMACs - pairs * d))
            return SparseReport(strategy: .denseThenMask, cost: cost, denseMACs: denseMACs, activePairs: pairs,
                                predictedSeconds: predicted)

        case .unitMajor:
            let groups = groups!
            groups.rows.withUnsafeBufferPointer { rows in
                let body: (Range<Int>, GemmEngine) -> Void = { range, engine in
                    for gi in range {
                        let lo = groups.lo[gi], width = groups.hi[gi] - lo
                        let rowMap = rows.baseAddress! + groups.rowOffsets[gi]
                        let m = groups.rowOffsets[gi + 1] - groups.rowOffsets[gi]
                        engine.gemm(m: m, n: width, k: d,
                                    a: MatrixOperand(base: x, rowStride: d, colStride: 1, rowIndex: rowMap),
                                    b: .rowMajor(w + lo * d, ld: d, transposed: true),
                                    c: OutputOperand(base: out + lo, rowStride: h, rowIndex: rowMap),
                                    epilogue: Epilogue(bias: bias.map { $0 + lo }, relu: relu))
                    }
                }
                if workerCount > 1 && groups.count >= workerCount {
                    gemm.executor.parallelFor(groups.count, grain: 1) { range, slot in body(range, self.slotEngines[slot]) }
                } else {
                    body(0..<groups.count, gemm)
                }
            }
            // Rows outside a group's union were never written, and union rows hold values for blocks they do not use.
            zeroInactive(out: out, plan: plan, width: h)
            let executed = groups.computedPairs * d
            let cost = CostBreakdown(
                useful: useful,
                overhead: KernelCost(bytesRead: maskBytes + 4 * groups.rows.count * d,
                                     bytesWritten: 4 * (groups.rows.count + batch * h - pairs)),
                wasted: KernelCost(macs: executed - pairs * d))
            return SparseReport(strategy: .unitMajor, cost: cost, denseMACs: denseMACs, activePairs: pairs,
                                predictedSeconds: predicted)

        case .sampleMajor:
            let gemv = gemm.kernels.gemv
            let body: (Range<Int>, Int) -> Void = { range, _ in
                for b in range {
                    let xb = x + b * d, ob = out + b * h
                    var next = 0
                    for r in plan.runOffsets[b]..<plan.runOffsets[b + 1] {
                        let s = plan.runStart[r], len = plan.runLength[r]
                        if s > next { (ob + next).update(repeating: 0, count: s - next) }
                        gemv(len, d, w + s * d, d, xb, ob + s, 0, bias.map { $0 + s }, relu)
                        next = s + len
                    }
                    if h > next { (ob + next).update(repeating: 0, count: h - next) }
                }
            }
            if workerCount > 1 && pairs * d >= gemm.parallelThresholdMACs {
                gemm.executor.parallelFor(batch, grain: 1, body)
            } else {
                body(0..<batch, 0)
            }
            let cost = CostBreakdown(
                useful: useful,
                overhead: KernelCost(bytesRead: maskBytes, bytesWritten: 4 * (batch * h - pairs)))
            return SparseReport(strategy: .sampleMajor, cost: cost, denseMACs: denseMACs, activePairs: pairs,
                                predictedSeconds: predicted)
        }
    }

    /// Writes 0 into every inactive (sample, unit) entry of a batch × width output.
    func zeroInactive(out: UnsafeMutablePointer<Float>, plan: PerSamplePlan, width: Int) {
        for b in 0..<plan.batch {
            let row = out + b * width
            var next = 0
            for r in plan.runOffsets[b]..<plan.runOffsets[b + 1] {
                if plan.runStart[r] > next { (row + next).update(repeating: 0, count: plan.runStart[r] - next) }
                next = plan.runStart[r] + plan.runLength[r]
            }
            if width > next { (row + next).update(repeating: 0, count: width - next) }
        }
    }

    // MARK: - Per-sample, layer 2

    func perSampleLayer2(h hIn: UnsafePointer<Float>, batch: Int, units h: Int, v: UnsafePointer<Float>,
                         bias: UnsafePointer<Float>?, c: Int, mask: GateMask, strategy: PerSampleStrategy,
                         y: UnsafeMutablePointer<Float>) -> SparseReport {
        let plan = PerSamplePlan(mask)
        let pairs = plan.activePairs
        let maskBytes = batch * plan.blocks
        let denseMACs = batch * h * c
        let useful = KernelCost(macs: pairs * c, bytesRead: 4 * (pairs + pairs * c), bytesWritten: 4 * batch * c)
        var predicted: [String: Double] = [:]
        var chosen = strategy
        let exact = UnitGroups(mask, blocksPerGroup: 1)
        if strategy == .auto {
            let model = costModel
            let tDense = model.passSeconds(bytes: 8 * batch * h) + parallel(model.gemmSeconds(m: batch, n: c, k: h),
                                                                             tasks: batch * c * h >= gemm.parallelThresholdMACs ? workerCount : 1)
            var tUnit = 0.0
            for gi in 0..<exact.count {
                tUnit += model.gemmSeconds(m: exact.rowOffsets[gi + 1] - exact.rowOffsets[gi], n: c, k: exact.hi[gi] - exact.lo[gi])
            }
            var tSample = 0.0
            for r in 0..<plan.runStart.count { tSample += model.gemvSeconds(rows: c, k: plan.runLength[r]) }
            tSample = parallel(tSample, tasks: min(batch, workerCount))
            predicted = [SparseStrategy.denseThenMask.rawValue: tDense, SparseStrategy.unitMajor.rawValue: tUnit,
                         SparseStrategy.sampleMajor.rawValue: tSample]
            chosen = min(tUnit, tSample) < autoMargin * tDense ? (tUnit <= tSample ? .unitMajor : .sampleMajor) : .denseThenMask
        }
        let biasValue: (Int) -> Float = { j in bias.map { $0[j] } ?? 0 }
        switch chosen {
        case .auto, .denseThenMask:
            // Inactive inputs must not leak in: copy h with them zeroed, then the dense product.
            let hm = maskedInput.reserve(batch * h)
            for b in 0..<batch { (hm + b * h).update(from: hIn + b * h, count: h) }
            zeroInactive(out: hm, plan: plan, width: h)
            gemm.gemm(m: batch, n: c, k: h, a: .rowMajor(UnsafePointer(hm), ld: h), b: .rowMajor(v, ld: h, transposed: true),
                      c: OutputOperand(base: y, rowStride: c), epilogue: Epilogue(bias: bias))
            let cost = CostBreakdown(useful: useful,
                                     overhead: KernelCost(bytesRead: maskBytes + 4 * batch * h, bytesWritten: 4 * batch * h),
                                     wasted: KernelCost(macs: denseMACs - pairs * c))
            return SparseReport(strategy: .denseThenMask, cost: cost, denseMACs: denseMACs, activePairs: pairs,
                                predictedSeconds: predicted)
        case .unitMajor:
            for b in 0..<batch { for j in 0..<c { y[b * c + j] = biasValue(j) } }
            // Groups accumulate into the same rows of y, so they run one after another (each GEMM may split).
            exact.rows.withUnsafeBufferPointer { rows in
                for gi in 0..<exact.count {
                    let lo = exact.lo[gi]
                    let rowMap = rows.baseAddress! + exact.rowOffsets[gi]
                    gemm.gemm(m: exact.rowOffsets[gi + 1] - exact.rowOffsets[gi], n: c, k: exact.hi[gi] - lo,
                              a: MatrixOperand(base: hIn + lo, rowStride: h, colStride: 1, rowIndex: rowMap),
                              b: .rowMajor(v + lo, ld: h, transposed: true),
                              c: OutputOperand(base: y, rowStride: c, rowIndex: rowMap), epilogue: Epilogue(beta: 1))
                }
            }
            let cost = CostBreakdown(useful: useful,
                                     overhead: KernelCost(bytesRead: maskBytes, bytesWritten: 4 * exact.rows.count))
            return SparseReport(strategy: .unitMajor, cost: cost, denseMACs: denseMACs, activePairs: pairs,
                                predictedSeconds: predicted)
        case .sampleMajor:
            let gemv = gemm.kernels.gemv
            let body: (Range<Int>, Int) -> Void = { range, _ in
                for b in range {
                    let yb = y + b * c, hb = hIn + b * h
                    for j in 0..<c { yb[j] = biasValue(j) }
                    for r in plan.runOffsets[b]..<plan.runOffsets[b + 1] {
                        let s = plan.runStart[r]
                        gemv(c, plan.runLength[r], v + s, h, hb + s, yb, 1, nil, false)
                    }
                }
            }
            if workerCount > 1 && pairs * c >= gemm.parallelThresholdMACs {
                gemm.executor.parallelFor(batch, grain: 1, body)
            } else {
                body(0..<batch, 0)
            }
            let cost = CostBreakdown(useful: useful, overhead: KernelCost(bytesRead: maskBytes))
            return SparseReport(strategy: .sampleMajor, cost: cost, denseMACs: denseMACs, activePairs: pairs,
                                predictedSeconds: predicted)
        }
    }

    // MARK: - Predictions (seconds) from the calibrated model

    func parallel(_ t: Double, tasks: Int) -> Double { t / Double(max(1, min(tasks, workerCount))) }

    func predictDense1(_ m: SparseCostModel, batch: Int, h: Int, d: Int) -> Double {
        let tasks = batch * h * d >= gemm.parallelThresholdMACs ? workerCount : 1
        return parallel(m.gemmSeconds(m: batch, n: h, k: d), tasks: tasks) + m.passSeconds(bytes: 4 * batch * h)
    }

    func predictUnitMajor1(_ m: SparseCostModel, _ g: UnitGroups, d: Int, batch: Int, h: Int) -> Double {
        var t = 0.0
        for gi in 0..<g.count {
            t += m.gemmSeconds(m: g.rowOffsets[gi + 1] - g.rowOffsets[gi], n: g.hi[gi] - g.lo[gi], k: d)
        }
        return parallel(t, tasks: g.count) + m.passSeconds(bytes: 4 * batch * h)
    }

    func predictSampleMajor1(_ m: SparseCostModel, _ p: PerSamplePlan, d: Int, batch: Int, h: Int) -> Double {
        var t = 0.0
        for r in 0..<p.runStart.count { t += m.gemvSeconds(rows: p.runLength[r], k: d) }
        return parallel(t, tasks: batch) + m.passSeconds(bytes: 4 * (batch * h - p.activePairs))
    }
}
