import DGHarness

/// dgperf next to the peer frameworks that ran the same cells in the same run (`--peers numpy,torch`):
/// median times side by side and dgperf's speedup over each peer.
public enum PeerTable {
    public static func make(_ results: RunResults) -> Table {
        let f = Format.fixed
        let peers = Implementation.allCases.filter { p in p != .dgperf && results.cells.contains { $0.implementation == p } }
        var byKey: [String: CellResult] = [:]
        for c in results.cells where c.isPeer { byKey[c.key] = c }
        var cols: [(String, Table.Align)] = [("model", .left), ("hidden", .left), ("threads", .right), ("batch", .right),
                                             ("r", .right), ("G", .right), ("mask", .left), ("peer ran", .left), ("dgperf ms", .right)]
        for p in peers { cols.append(("\(p.rawValue) ms", .right)) }
        for p in peers { cols.append(("dgperf vs \(p.rawValue) [95% CI]", .right)) }
        cols.append(("cross-check", .left))
        var t = Table(title: "dgperf vs \(peers.map(\.rawValue).joined(separator: " / ")) (same run, same cells, same weights, masks and inputs)",
                      columns: cols)
        for d in results.dgperfCells where d.status == .ok {
            guard let dt = d.timing else { continue }
            let records = peers.map { byKey[CellResult.key(d.cell, $0)] }
            guard records.contains(where: { $0 != nil }) else { continue }
            let c = d.cell
            let gated = Cell.isGated(c.model)
            let rText = c.model == .dense || c.model == .dropout ? "1" : f(c.activeFraction, c.activeFraction < 0.1 ? 3 : 2)
            let ran = records.compactMap { $0?.notes["strategy"] }.first ?? ""
            var row = [c.model.rawValue, c.hidden.map(String.init).joined(separator: "x"), "\(c.threads)", "\(c.batch)", rText,
                       gated ? "\(c.granularity ?? 1)" : "–", gated ? (c.maskKind?.rawValue ?? "") : "–", ran,
                       EfficiencyTable.ms(dt.summary.median)]
            for r in records {
                guard let r else { row.append("–"); continue }
                row.append(r.status == .ok ? r.timing.map { EfficiencyTable.ms($0.summary.median) } ?? "n/a" : r.status.rawValue)
            }
            var checks: [String] = []
            for (p, r) in zip(peers, records) {
                guard let r, r.status == .ok, let pt = r.timing else { row.append("–"); continue }
                let s = pt.summary.median / dt.summary.median
                let lo = pt.medianCI.lower / dt.medianCI.upper, hi = pt.medianCI.upper / dt.medianCI.lower
                row.append(f(s, 2) + "× [" + f(lo, 2) + "–" + f(hi, 2) + "]")
                if let check = r.notes["crossCheck"], !check.hasPrefix("ok") { checks.append("\(p.rawValue) MISMATCH") }
            }
            let checked = zip(peers, records).filter { $0.1?.notes["crossCheck"] != nil }.count
            row.append(checks.isEmpty ? (checked > 0 ? "ok" : "–") : checks.joined(separator: ", "))
            t.rows.append(row)
        }
        t.notes = legend(results, peers: peers)
        return t
    }

    static func legend(_ results: RunResults, peers: [Implementation]) -> [String] {
        var notes = [
            "ms: median per forward call (same repetition policy for every column); dgperf vs X = X's median / dgperf's median, > 1 means dgperf is faster; range from both medians' 95% CIs",
            "peer ran: dense = x @ W.T + b, ReLU, output layer; gather = W[idx] (torch: index_select) for shared masks and batch 1; dense-then-mask = full product times the 0/1 unit mask (per-sample masks); +gate-predictor: dg's predictor runs too, as in dgperf; switch-topK: router, top-k, capacity, expert MLPs on gathered rows",
            "cross-check: peer output vs dgperf's on the first input with the same masks, max |Δ| / max |dgperf| ≤ 1e-4",
        ]
        for p in peers {
            let recs = results.cells.filter { $0.implementation == p }
            if let blas = recs.compactMap({ $0.notes["blas"] }).first {
                let env = recs.compactMap { $0.notes["env"] }.first.map { "; \($0)" } ?? ""
                notes.append("\(p.rawValue): \(blas); threads as the cell, unpinned\(env)")
            }
            let bad = recs.filter { $0.status != .ok }
            if let first = bad.first {
                notes.append("\(p.rawValue): \(bad.count) cell\(bad.count == 1 ? "" : "s") not measured (\(first.reason ?? "no reason"))")
            }
            let mismatches = recs.filter { $0.notes["crossCheck"].map { !$0.hasPrefix("ok") } ?? false }
            for m in mismatches.prefix(5) { notes.append("\(p.rawValue) \(m.cell.key): \(m.notes["crossCheck"]!)") }
        }
        return notes
    }
}
