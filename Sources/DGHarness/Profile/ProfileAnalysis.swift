import DGKernels
import DGModels
import DGRuntime
import DGStats

/// Turns a `ProfileMeasurement` into the report: medians per (layer, phase), rates, roofline position,
/// and the two-sentence interpretation. Pure (no measuring), so tests feed it fixed numbers.
public enum ProfileAnalysis {
    public static func report(_ m: ProfileMeasurement, request: ProfileRequest, limits: MachineLimits, environment: EnvironmentInfo,
                              notes: [String] = []) -> ProfileReport {
        let threads = request.threads
        let peak = limits.peakGflops(threads: threads)
        let bw = limits.memoryBandwidth(threads: threads)
        let ridge = bw > 0 ? peak / bw : .infinity
        // Cells in first-seen order (layer, then phase order, as the recorder lists them).
        var keys: [ProfileMeasurement.CellKey] = []
        var seen = Set<ProfileMeasurement.CellKey>()
        for s in m.samples { for e in s { let k = ProfileMeasurement.CellKey(layer: e.layer, phase: e.phase); if seen.insert(k).inserted { keys.append(k) } } }
        keys.sort { ($0.layer, $0.phase.index) < ($1.layer, $1.phase.index) }
        let calls = max(m.profiledCalls, 1)
        var rows: [ProfilePhaseRow] = []
        for k in keys {
            let secs = m.samples.map { s in Double(s.first { $0.layer == k.layer && $0.phase == k.phase }?.nanoseconds ?? 0) * 1e-9 }
            let sum = stats(secs)
            let work = m.workByCell[k] ?? .zero
            let macs = Int((Double(work.macs) / Double(calls)).rounded())
            let read = Int((Double(work.bytesRead) / Double(calls)).rounded())
            let written = Int((Double(work.bytesWritten) / Double(calls)).rounded())
            let t = sum.median
            let flops = 2 * Double(macs), bytes = Double(read + written)
            let gflops = flops > 0 && t > 0 ? flops / t / 1e9 : nil
            let gbps = bytes > 0 && t > 0 ? bytes / t / 1e9 : nil
            let ai = flops > 0 && bytes > 0 ? flops / bytes : nil
            rows.append(ProfilePhaseRow(
                layer: k.layer, layerName: k.layer < 0 ? "model" : (k.layer < m.layerNames.count ? m.layerNames[k.layer] : "layer \(k.layer)"),
                phase: k.phase, calls: Double(m.callsByCell[k] ?? 0) / Double(calls),
                medianSeconds: t, p05Seconds: sum.p05, p95Seconds: sum.p95, share: 0,
                macs: macs, bytesRead: read, bytesWritten: written, gflops: gflops, gigabytesPerSecond: gbps,
                arithmeticIntensity: ai, fractionOfPeak: gflops.map { peak > 0 ? $0 / peak : 0 },
                fractionOfBandwidth: gbps.map { bw > 0 ? $0 / bw : 0 },
                bound: ai.map { $0 < ridge ? "memory" : "compute" }))
        }
        let phaseSum = rows.reduce(0) { $0 + $1.medianSeconds }
        for i in rows.indices { rows[i].share = phaseSum > 0 ? rows[i].medianSeconds / phaseSum : 0 }
        let prof = stats(m.profiledSeconds), unprof = stats(m.unprofiledSeconds)
        let totalMacs = rows.reduce(0) { $0 + $1.macs }, totalBytes = rows.reduce(0) { $0 + $1.bytes }
        let totals = ProfileTotals(
            profiledMedianSeconds: prof.median, unprofiledMedianSeconds: unprof.median,
            unprofiledP05Seconds: unprof.p05, unprofiledP95Seconds: unprof.p95,
            overheadFraction: unprof.median > 0 ? prof.median / unprof.median - 1 : 0,
            phaseSumSeconds: phaseSum, phaseSumOverProfiled: prof.median > 0 ? phaseSum / prof.median : 0,
            macs: totalMacs, bytes: totalBytes,
            gflops: unprof.median > 0 ? 2 * Double(totalMacs) / unprof.median / 1e9 : 0)
        var allNotes = notes
        if m.recorderMismatches > 0 { allNotes.append("phase hooks were unbalanced \(m.recorderMismatches) times (a model bug): times may be misattributed") }
        allNotes.append("gemm time excludes packing (timed inside the GEMM engine, mean over the workers that packed); the bytes the packing read (gathers included) are charged to pack, the rest of the layer's to gemm; ReLU + bias are fused into the gemm epilogue")
        return ProfileReport(
            schema: ProfileReport.schemaVersion, spec: m.spec, batch: request.batch, threads: threads, weights: request.weightsPath,
            activeFraction: m.activeFraction, inputs: m.inputs, kernel: limits.kernel, repetitions: m.profiledSeconds.count, callsPerSample: m.callsPerSample,
            environment: environment, limits: limits, peakGflops: peak, memoryGigabytesPerSecond: bw, phases: rows, totals: totals,
            forwardCost: m.forwardCost, counters: m.counters,
            interpretation: interpret(rows: rows, totals: totals, peak: peak, bandwidth: bw, threads: threads), notes: allNotes)
    }

    /// Median and 5th/95th percentiles (zeros for no samples).
    static func stats(_ v: [Double]) -> (median: Double, p05: Double, p95: Double) {
        guard let s = Summary(v) else { return (0, 0, 0) }
        return (s.median, s.p05, s.p95)
    }

    /// Two sentences a researcher can act on: (1) what dominates and what gating costs for what work;
    /// (2) how close the GEMM and the memory phases run to the measured limits.
    public static func interpret(rows: [ProfilePhaseRow], totals: ProfileTotals, peak: Double, bandwidth: Double, threads: Int) -> [String] {
        func pct(_ x: Double) -> String { pctString(x) }
        let totalMacs = max(Double(totals.macs), 1)
        func byPhase(_ p: Phase) -> (share: Double, seconds: Double, macs: Int, bytes: Int) {
            rows.filter { $0.phase == p }.reduce((0, 0, 0, 0)) { ($0.0 + $1.share, $0.1 + $1.medianSeconds, $0.2 + $1.macs, $0.3 + $1.bytes) }
        }
        guard let top = Phase.allCases.map({ ($0, byPhase($0).share) }).max(by: { $0.1 < $1.1 }) else { return [] }
        let gate = byPhase(.gate), mask = byPhase(.mask)
        var first = "\(name(top.0)) dominates with \(pct(top.1)) of the time"
        if gate.seconds > 0 || mask.seconds > 0 {
            first += "; the gate/router costs \(pct(gate.share)) of the time for \(pct(Double(gate.macs) / totalMacs)) of the MACs"
            first += " and mask building \(pct(mask.share))"
        } else {
            first += " (no gate or mask work in this model)"
        }
        let gemm = byPhase(.gemm), pack = byPhase(.pack)
        var second = ""
        if gemm.seconds > 0 && gemm.macs > 0 {
            let g = 2 * Double(gemm.macs) / gemm.seconds / 1e9
            let withPack = 2 * Double(gemm.macs) / (gemm.seconds + pack.seconds) / 1e9
            second = "The GEMM runs at \(fmt(g)) GFLOP/s, \(pct(peak > 0 ? g / peak : 0)) of the \(threads)-thread FMA peak"
                + " (\(pct(peak > 0 ? withPack / peak : 0)) counting its packing)"
        }
        // The biggest phase that moves bytes without FLOPs (pack/gather) vs the DRAM roof.
        let memoryPhases = [Phase.pack, .gather, .combine].map { ($0, byPhase($0)) }.filter { $0.1.seconds > 0 }
        if let mp = memoryPhases.max(by: { $0.1.share < $1.1.share }) {
            let gbps = mp.1.bytes > 0 ? Double(mp.1.bytes) / mp.1.seconds / 1e9 : nil
            let clause: String
            if let gbps {
                let f = bandwidth > 0 ? gbps / bandwidth : 0
                let verdict = f >= 1 ? "above the DRAM roof: its data comes from cache, so the copy itself is the cost"
                    : f >= 0.5 ? "memory-bound" : "bound by latency and loop overhead, not bandwidth"
                clause = "\(name(mp.0)) takes \(pct(mp.1.share)) of the time at \(fmt(gbps)) GB/s (\(pct(f)) of the measured DRAM bandwidth: \(verdict))"
            } else {
                clause = "\(name(mp.0)) takes \(pct(mp.1.share)) of the time moving no accounted bytes (pure overhead)"
            }
            second += second.isEmpty ? clause.prefix(1).uppercased() + clause.dropFirst() : "; \(clause)"
        }
        if second.isEmpty { second = "No GEMM or memory phase was recorded" }
        return [first + ".", second + "."]
    }

    static func name(_ p: Phase) -> String {
        switch p {
        case .gate: return "gate/router"
        case .mask: return "mask building"
        case .pack: return "packing (incl. gathers)"
        case .gemm: return "GEMM"
        case .gather: return "output zeroing/scatter"
        case .activation: return "unfused activation"
        case .combine: return "the MoE combine"
        case .other: return "bookkeeping outside the phases"
        }
    }

    static func pctString(_ x: Double) -> String {
        let p = x * 100
        return (p < 10 ? fixed1(p) : String(Int(p.rounded()))) + "%"
    }

    static func fixed1(_ x: Double) -> String {
        let r = (x * 10).rounded() / 10
        let i = Int(r), f = Int(((r - Double(i)) * 10).rounded())
        return "\(i).\(abs(f))"
    }

    static func fmt(_ x: Double) -> String { x >= 100 ? String(Int(x.rounded())) : fixed1(x) }
}
