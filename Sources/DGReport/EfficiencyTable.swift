import DGHarness

/// Paper-style efficiency table: one row per measured cell (model × shape × r), in sweep order.
public enum EfficiencyTable {
    public static func make(_ results: RunResults) -> Table {
        let f = Format.fixed
        let hasAccuracy = results.dgperfCells.contains { $0.accuracy != nil }
        var cols: [(String, Table.Align)] = [
            ("model", .left), ("hidden", .left), ("threads", .right), ("batch", .right), ("r", .right), ("G", .right),
            ("mask", .left), ("time ms [95% CI]", .right), ("speedup [95% CI]", .right), ("ideal", .right),
            ("efficiency", .right), ("rel MAC paper", .right), ("rel MAC net", .right), ("GFLOP/s", .right), ("% peak", .right),
        ]
        if hasAccuracy { cols.append(("accuracy", .right)) }
        // Shards merged from several machines: one column names the machine (rows are grouped by it).
        let machines = results.environments ?? []
        if machines.count > 1 { cols.insert(("machine", .left), at: 0) }
        var t = Table(title: "Efficiency (\(results.spec.preset); \(results.environment.cpuModel); kernel \(results.environment.kernel))", columns: cols)
        let ordered = machines.count > 1
            ? results.dgperfCells.enumerated().sorted { a, b in
                let fa = a.element.fingerprint ?? results.environment.fingerprint, fb = b.element.fingerprint ?? results.environment.fingerprint
                return fa != fb ? fa < fb : a.offset < b.offset
            }.map(\.element)
            : results.dgperfCells
        for r in ordered where r.status == .ok {
            guard let tm = r.timing, let d = r.derived else { continue }
            let c = r.cell
            let gated = Cell.isGated(c.model)
            var speedup = "n/a"
            if let s = d.speedup {
                speedup = f(s, 2)
                if let lo = d.speedupLow, let hi = d.speedupHigh { speedup += " [" + f(lo, 2) + "–" + f(hi, 2) + "]" }
            }
            let time: String = ms(tm.summary.median) + " [" + ms(tm.medianCI.lower) + "–" + ms(tm.medianCI.upper) + "]"
            let rText: String = c.model == .dense || c.model == .dropout ? "1" : f(c.activeFraction, c.activeFraction < 0.1 ? 3 : 2)
            let ideal: String = d.fractionOfIdeal.map { f(100 * $0, 0) + "%" } ?? "n/a"
            let peak: String = d.fractionOfPeak.map { f(100 * $0, 0) + "%" } ?? "n/a"
            var row: [String] = [
                c.model.rawValue, c.hidden.map(String.init).joined(separator: "x"), "\(c.threads)", "\(c.batch)",
                rText,
                gated ? "\(c.granularity ?? 1)" : "–", gated ? (c.maskKind?.rawValue ?? "") : "–",
                time, speedup, f(d.idealSpeedup, 1), ideal,
                f(d.relativeMacPaper, 3), f(d.relativeMacNet, 3), f(d.gflops, 1),
                peak,
            ]
            if hasAccuracy { row.append(r.accuracy.map { f(100 * $0, 2) + "%" } ?? "") }
            if machines.count > 1 {
                let fp = r.fingerprint ?? results.environment.fingerprint
                row.insert(machines.first { $0.fingerprint == fp }.map { "\($0.cpuModel) (\(fp))" } ?? fp, at: 0)
            }
            t.rows.append(row)
        }
        t.notes = legend(results)
        return t
    }

    /// Milliseconds with 3 significant-ish decimals.
    static func ms(_ seconds: Double) -> String {
        let v = seconds * 1e3
        return Format.fixed(v, v < 1 ? 4 : v < 10 ? 3 : 2)
    }

    static func legend(_ results: RunResults) -> [String] {
        let paired = results.dgperfCells.contains { $0.referenceTiming != nil }
        let speedup = paired
            ? "speedup = median over repetitions of dense time / this time, the same shape's dense model timed alternately with this cell (ABBA)"
            : "speedup = dense median / this median, same run and shape"
        var notes = [
            "time: median ms per forward call, 95% CI of the median from order statistics; \(speedup); ideal = 1/r; efficiency = speedup / ideal",
            "rel MAC paper = useful MACs / dense MACs (what papers report); rel MAC net adds gate/router/packing overhead",
            "masks: \(results.spec.masks); \(results.spec.cold ? "cold caches (flushed before each sample)" : "warm caches"); worker pinning: \(results.environment.pinning) (per-cell pinned/migration checks in results.json)",
        ]
        var skipped: [String: (Int, String)] = [:]
        for c in results.dgperfCells where c.status != .ok {
            let k = "\(c.cell.model.rawValue) \(c.status.rawValue)"
            skipped[k] = ((skipped[k]?.0 ?? 0) + 1, c.reason ?? "")
        }
        for (k, v) in skipped.sorted(by: { $0.key < $1.key }) { notes.append("\(k): \(v.0) cell\(v.0 == 1 ? "" : "s") (\(v.1))") }
        if !results.complete { notes.append("INCOMPLETE run: \(results.dgperfCells.count) cells so far; continue with `dgperf sweep --resume`") }
        return notes
    }
}

/// Where gated inference starts to beat dense: per (model, shape, G, threads, mask kind), the active fraction r*
/// below which the gated model is faster than the dense one in wall time, interpolated linearly between the
/// measured r values; the range comes from the same interpolation on the speedups' 95 % CI bounds.
public enum BreakEvenTable {
    public enum Crossing: Equatable, Sendable {
        /// Faster than dense at every measured r (r* ≥ the largest r).
        case everywhere(Double)
        /// Slower than dense at every measured r (r* < the smallest r).
        case nowhere(Double)
        case at(Double)
    }

    /// Break-even r* from (r, speedup) points: scanning down from the largest r, the first r with speedup ≥ 1,
    /// interpolated with its larger neighbour.
    public static func crossing(_ points: [(r: Double, speedup: Double)]) -> Crossing? {
        let p = points.sorted { $0.r > $1.r }
        guard let top = p.first else { return nil }
        guard let i = p.firstIndex(where: { $0.speedup >= 1 }) else { return .nowhere(p.last!.r) }
        if i == 0 { return .everywhere(top.r) }
        let (a, b) = (p[i - 1], p[i])  // a: larger r, speedup < 1; b: smaller r, speedup ≥ 1
        let w = (1 - a.speedup) / (b.speedup - a.speedup)
        return .at(a.r + w * (b.r - a.r))
    }

    public static func make(_ results: RunResults) -> Table {
        var t = Table(title: "Break-even active fraction (gated faster than dense below r*)", columns: [
            ("model", .left), ("hidden", .left), ("batch", .right), ("G", .right), ("threads", .right), ("mask", .left),
            ("r* (break-even)", .right), ("95% range", .right), ("sparsity 1−r*", .right), ("points", .right),
        ])
        var groups: [String: [CellResult]] = [:]
        var order: [String] = []
        for r in results.dgperfCells where r.status == .ok && Cell.isGated(r.cell.model) && r.derived?.speedup != nil {
            let c = r.cell
            let k = "\(c.model.rawValue)|\(c.groupKey)|\(c.granularity ?? 1)|\(c.maskKind?.rawValue ?? "")"
            if groups[k] == nil { order.append(k) }
            groups[k, default: []].append(r)
        }
        for k in order {
            let cells = groups[k]!
            let c = cells[0].cell
            func pts(_ s: (DerivedFigures) -> Double?) -> [(r: Double, speedup: Double)] {
                cells.compactMap { x in x.derived.flatMap(s).map { (x.cell.activeFraction, $0) } }
            }
            let mid = crossing(pts { $0.speedup })
            let lo = crossing(pts { $0.speedupLow }), hi = crossing(pts { $0.speedupHigh })
            t.rows.append([
                c.model.rawValue, c.hidden.map(String.init).joined(separator: "x"), "\(c.batch)", "\(c.granularity ?? 1)",
                "\(c.threads)", c.maskKind?.rawValue ?? "", describe(mid), "\(describe(lo)) – \(describe(hi))",
                sparsity(mid), "\(cells.count)",
            ])
        }
        if t.rows.isEmpty {
            t.notes = ["no gated model was measured in this run (dg/random cells skipped or absent), so there is no break-even point yet"]
        } else {
            t.notes = ["r* interpolated linearly between measured active fractions; range from the speedup CIs (pessimistic – optimistic); “≥ x”: faster at every measured r; “< x”: slower at every measured r"]
        }
        return t
    }

    static func describe(_ c: Crossing?) -> String {
        switch c {
        case .none: return "n/a"
        case .everywhere(let r): return "≥ \(Format.fixed(r, 2))"
        case .nowhere(let r): return "< \(Format.fixed(r, 2))"
        case .at(let r): return Format.fixed(r, 3)
        }
    }

    static func sparsity(_ c: Crossing?) -> String {
        switch c {
        case .at(let r): return Format.fixed(1 - r, 3)
        case .everywhere(let r): return "≤ \(Format.fixed(1 - r, 2))"
        case .nowhere(let r): return "> \(Format.fixed(1 - r, 2))"
        case .none: return "n/a"
        }
    }
}

/// The compare verdict table (`dgperf compare`).
public enum ComparisonTable {
    public static func make(_ report: ComparisonReport, showUnchanged: Bool = false) -> Table {
        let f = Format.fixed
        var t = Table(title: "dgperf compare: \(report.sameMachine ? "same machine (\(report.newFingerprint))" : "different machines — same-run ratios only")", columns: [
            ("verdict", .left), ("cell", .left), ("metric", .left), ("base", .right), ("new", .right), ("change", .right),
            ("threshold", .right), ("p (Mann–Whitney)", .right),
        ])
        let rank: [Verdict: Int] = [.regressed: 0, .improved: 1, .unchanged: 2]
        let rows = report.rows.filter { showUnchanged || $0.verdict != .unchanged }
            .sorted { rank[$0.verdict]! < rank[$1.verdict]! }
        for r in rows {
            let fmt = { (v: Double) in r.metric == .time ? EfficiencyTable.ms(v) + " ms" : r.metric == .peakFraction ? f(100 * v, 1) + "%" : f(v, 3) + "×" }
            t.rows.append([r.verdict.rawValue.uppercased(), r.key, r.metric.rawValue, fmt(r.base), fmt(r.new),
                           (r.change >= 0 ? "+" : "") + f(100 * r.change, 1) + "%", "±" + f(100 * r.threshold, 0) + "%",
                           r.pValue < 0.0001 ? "<0.0001" : f(r.pValue, 4)])
        }
        let counts = Dictionary(grouping: report.rows, by: \.verdict).mapValues(\.count)
        var notes = ["\(counts[.regressed] ?? 0) regressed, \(counts[.improved] ?? 0) improved, \(counts[.unchanged] ?? 0) unchanged (metric × cell); metrics: \(report.metrics.map(\.rawValue).joined(separator: ", "))",
                     "change is signed so that + is better; a verdict needs |change| > threshold AND p < alpha on the repetitions"]
        notes += report.notes
        if !report.missingInNew.isEmpty {
            notes.append("missing in new run (\(report.missingInNew.count)): " + report.missingInNew.prefix(10).joined(separator: "; ") + (report.missingInNew.count > 10 ? "; …" : ""))
        }
        if !report.missingInBase.isEmpty {
            notes.append("new cells not in base (\(report.missingInBase.count)): " + report.missingInBase.prefix(10).joined(separator: "; ") + (report.missingInBase.count > 10 ? "; …" : ""))
        }
        t.notes = notes
        return t
    }
}
