import DGHarness
import DGKernels
import DGModels
import DGRuntime

/// Renders a `ProfileReport` as a DeepSpeed-profiler-like text: header (what ran, machine limits), one row
/// per (layer, phase), totals, the profiler's overhead, counters, and the interpretation.
public enum ProfileTable {
    /// The per-phase table (also usable as Markdown/LaTeX/CSV via `TableFormat`).
    public static func table(_ r: ProfileReport) -> Table {
        var t = Table(title: "", columns: [
            ("layer", .left), ("phase", .left), ("calls", .right), ("time µs", .right), ("p05–p95 µs", .right), ("share", .right),
            ("MACs", .right), ("bytes", .right), ("GFLOP/s", .right), ("GB/s", .right), ("FLOP/B", .right),
            ("% peak", .right), ("% DRAM bw", .right), ("bound", .left),
        ])
        for p in r.phases {
            t.rows.append([
                p.layerName, p.phase.rawValue, calls(p.calls), Format.fixed(p.medianSeconds * 1e6, 1),
                Format.fixed(p.p05Seconds * 1e6, 1) + "–" + Format.fixed(p.p95Seconds * 1e6, 1), percent(p.share),
                p.macs > 0 ? si(Double(p.macs)) : "–", p.bytes > 0 ? si(Double(p.bytes)) + "B" : "–",
                p.gflops.map { Format.fixed($0, 1) } ?? "–", p.gigabytesPerSecond.map { Format.fixed($0, 1) } ?? "–",
                p.arithmeticIntensity.map { Format.fixed($0, $0 < 10 ? 2 : 1) } ?? "–",
                p.fractionOfPeak.map(percent) ?? "–", p.fractionOfBandwidth.map(percent) ?? "–", p.bound ?? "",
            ])
        }
        let tot = r.totals
        t.rows.append([
            "total", "(Σ phases)", "", Format.fixed(tot.phaseSumSeconds * 1e6, 1), "", percent(1),
            si(Double(tot.macs)), si(Double(tot.bytes)) + "B",
            Format.fixed(tot.phaseSumSeconds > 0 ? 2 * Double(tot.macs) / tot.phaseSumSeconds / 1e9 : 0, 1), "", "",
            percent(r.peakGflops > 0 && tot.phaseSumSeconds > 0 ? 2 * Double(tot.macs) / tot.phaseSumSeconds / 1e9 / r.peakGflops : 0),
            "", "",
        ])
        return t
    }

    /// The whole text report printed by `dgperf profile`.
    public static func render(_ r: ProfileReport) -> String {
        let s = r.spec
        var desc = "\(s.kind.rawValue) \(s.dims.map(String.init).joined(separator: "→"))  batch \(r.batch)"
        switch s.kind {
        case .dg, .random:
            // A trained model's gates decide its active fraction: print what this call measured, not the spec's.
            let active = r.weights != nil ? r.activeFraction.map { "learned \(Format.fixed($0, 2))" } ?? "learned" : Format.fixed(s.activeFraction, 2)
            desc += "  active \(active)  G=\(s.granularity)  mask \(s.maskKind.rawValue)"
            if s.kind == .dg { desc += "  gate \(s.gate)" }
        case .moe: desc += "  experts \(s.experts)×\(s.unitsPerExpert) top-\(s.topK) capacity \(Format.fixed(s.capacityFactor, 2))"
        case .dense, .dropout: break
        }
        var out = "dgperf profile  \(desc)  threads \(r.threads)  kernel \(r.kernel)\n"
        if let w = r.weights { out += "weights \(w)  inputs: \(r.inputs)\n" } else { out += "synthetic weights and masks  inputs: \(r.inputs)\n" }
        let l = r.limits
        out += "limits (measured \(l.measuredAt)): FMA peak \(Format.fixed(l.fmaPeakGflopsPerCore, 1)) GFLOP/s/core, "
            + "\(Format.fixed(l.fmaPeakGflopsAllCores, 1)) on \(l.cores) cores; DRAM triad \(Format.fixed(r.memoryGigabytesPerSecond, 1)) GB/s "
            + "at \(r.threads) thread\(r.threads == 1 ? "" : "s"); roofs used: \(Format.fixed(r.peakGflops, 1)) GFLOP/s, "
            + "\(Format.fixed(r.memoryGigabytesPerSecond, 1)) GB/s (ridge \(Format.fixed(r.memoryGigabytesPerSecond > 0 ? r.peakGflops / r.memoryGigabytesPerSecond : 0, 1)) FLOP/B)\n"
        out += "per forward call, median of \(r.repetitions) samples × \(r.callsPerSample) call\(r.callsPerSample == 1 ? "" : "s")\n\n"
        out += aligned(table(r))
        let tot = r.totals
        out += "\nforward call: \(Format.fixed(tot.unprofiledMedianSeconds * 1e6, 1)) µs unprofiled (p05 \(Format.fixed(tot.unprofiledP05Seconds * 1e6, 1)), "
            + "p95 \(Format.fixed(tot.unprofiledP95Seconds * 1e6, 1))), \(Format.fixed(tot.gflops, 1)) GFLOP/s; "
            + "Σ phases = \(Format.fixed(tot.phaseSumOverProfiled * 100, 1))% of the profiled median\n"
        out += "profiler overhead: profiled \(Format.fixed(tot.profiledMedianSeconds * 1e6, 1)) µs vs unprofiled "
            + "\(Format.fixed(tot.unprofiledMedianSeconds * 1e6, 1)) µs = \(tot.overheadFraction >= 0 ? "+" : "")\(Format.fixed(tot.overheadFraction * 100, 1))% "
            + (tot.overheadFraction <= 0.05 ? "(target ≤ 5%: met)" : "(target ≤ 5%: NOT met)") + "\n"
        out += counters(r.counters, calls: r.repetitions * r.callsPerSample * 2)
        out += "\n" + r.interpretation.joined(separator: " ") + "\n"
        if !r.notes.isEmpty { out += "\n" + r.notes.map { "note: \($0)" }.joined(separator: "\n") + "\n" }
        return out
    }

    /// "hardware counters: …" and "software counters (source): …" lines.
    public static func counters(_ c: CounterReport, calls: Int) -> String {
        let hw = c.readings.filter { ["cycles", "instructions", "cache-misses", "instructions-per-cycle"].contains($0.name) }
        let sw = c.readings.filter { !hw.contains($0) }
        var out = "hardware counters: "
        out += hw.isEmpty ? c.hardware : hw.map { "\($0.name) \(reading($0))" }.joined(separator: ", ")
        out += "\nsoftware counters (\(c.softwareSource), whole timed loop of \(calls) calls): "
        out += sw.map { "\($0.name) \(reading($0))" }.joined(separator: ", ") + "\n"
        return out
    }

    static func reading(_ r: CounterReading) -> String {
        if r.unit == "s" { return Format.fixed(r.value, 3) + " s" }
        if r.name == "instructions-per-cycle" { return Format.fixed(r.value, 2) }
        return si(r.value)
    }

    /// A plain aligned text table (for the terminal).
    static func aligned(_ t: Table) -> String {
        let widths = t.columnNames.indices.map { i in ([t.columnNames[i]] + t.rows.map { $0[i] }).map(\.count).max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.indices.map { i in t.alignments[i] == .right ? Format.pad(cells[i], widths[i]) : Format.padRight(cells[i], widths[i]) }
                .joined(separator: "  ")
        }
        var out = line(t.columnNames) + "\n"
        out += String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1)) + "\n"
        for (i, r) in t.rows.enumerated() {
            if i == t.rows.count - 1 { out += String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1)) + "\n" }
            out += line(r) + "\n"
        }
        return out
    }

    static func percent(_ x: Double) -> String { Format.fixed(x * 100, x * 100 < 10 ? 1 : 0) + "%" }

    static func calls(_ x: Double) -> String { x == x.rounded() ? String(Int(x)) : Format.fixed(x, 1) }

    /// 1234567 → "1.23M".
    static func si(_ x: Double) -> String {
        let a = abs(x)
        for (scale, suffix) in [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")] where a >= scale {
            let v = x / scale
            return Format.fixed(v, abs(v) < 10 ? 2 : abs(v) < 100 ? 1 : 0) + suffix
        }
        return Format.fixed(x, x == x.rounded() ? 0 : 2)
    }
}
