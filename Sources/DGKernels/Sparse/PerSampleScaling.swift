import DGRuntime

extension SparseEngine {
    /// Times each per-sample strategy on this engine's workers against what `model` (one core's calibration, divided
    /// over the workers) predicts for it: a unit-gate layer 784 → 2048 at r = 0.1 (the dot kernel, sample-major) and
    /// 16-unit blocks at r = 0.1 (the grouped GEMMs), weights pre-packed,
    /// at the two batches of `PerSampleScaling`; the best of three calls each. About 0.1 s at 16 threads.
    /// The engine's own model must already be `model` (the strategies consult it while they run).
    func measureScaling(_ model: SparseCostModel) -> PerSampleScaling {
        let d = 784, h = 2048
        var rng = SplitMix64(seed: 23)
        let w = (0..<(h * d)).map { _ in rng.nextFloat() - 0.5 }
        let savedKernel = unitMajorKernel
        defer { unitMajorKernel = savedKernel }
        var ratios: [SparseStrategy: [Double]] = [:]
        w.withUnsafeBufferPointer { wp in
            let packed = gemm.packWeights(wp.baseAddress!, n: h, k: d, ldw: d)
            for batch in PerSampleScaling.batches {
                let x = (0..<(batch * d)).map { _ in rng.nextFloat() - 0.5 }
                var out = [Float](repeating: 0, count: batch * h)
                func mask(granularity g: Int, active r: Double) -> GateMask {
                    let blocks = (h + g - 1) / g
                    let bits = (0..<(batch * blocks)).map { _ in UInt8(Double(rng.nextFloat()) < r ? 1 : 0) }
                    return try! GateMask.perSample(bits: bits, batch: batch, granularity: g, units: h)
                }
                let units = mask(granularity: 1, active: 0.1), blocks16 = mask(granularity: 16, active: 0.1)
                let unitStats = maskStats(units, wideBlocksPerGroup: unitMajorLayout(granularity: 1, packed: true).wide)
                let layout16 = unitMajorLayout(granularity: 16, packed: true)
                let grouped = predictUnitMajorGroupings(model, maskStats(blocks16, wideBlocksPerGroup: layout16.wide), layout16, d: d)
                let cases: [(SparseStrategy, PerSampleStrategy, UnitMajorKernelChoice, GateMask, Double)] = [
                    (.unitMajorDots, .unitMajor, .dots, units, predictUnitDots1(model, unitStats, d: d)),
                    (.sampleMajor, .sampleMajor, .auto, units, predictSampleMajor1(model, unitStats, d: d)),
                    (.unitMajor, .unitMajor, .gemm, blocks16, min(grouped.exact, grouped.wide)),
                ]
                x.withUnsafeBufferPointer { xp in
                    out.withUnsafeMutableBufferPointer { op in
                        let output = op.baseAddress!
                        for (label, strategy, kernel, m, predicted) in cases {
                            unitMajorKernel = kernel
                            let call = {
                                _ = self.perSampleLayer1(x: xp.baseAddress!, batch: batch, d: d, w: wp.baseAddress!, bias: nil,
                                                         h: h, mask: m, relu: true, strategy: strategy, packed: packed,
                                                         out: output)
                            }
                            call()
                            var best = Double.infinity
                            for _ in 0..<3 { best = min(best, timeSeconds(call)) }
                            ratios[label, default: []].append(predicted > 0 && predicted.isFinite ? best / predicted : 1)
                        }
                    }
                }
            }
        }
        return PerSampleScaling(unitMajor: ratios[.unitMajor] ?? [], unitMajorDots: ratios[.unitMajorDots] ?? [],
                                sampleMajor: ratios[.sampleMajor] ?? [])
    }
}
