/// Joins shard results (`dgperf merge`). Shards hold whole shape groups, so every speedup in the merged
/// file is still a same-run ratio. The merged file is complete when it holds every cell of the spec.
public enum Merge {
    public static func merge(_ parts: [(source: String, results: RunResults)], now: String = Clock.isoNow()) throws -> (RunResults, [String]) {
        guard let first = parts.first else { throw HarnessError.usage("merge needs at least one results file") }
        var notes: [String] = []
        var merged = first.results
        merged.shard = nil
        merged.cells = []
        var origin: [String: String] = [:]
        var environments: [EnvironmentInfo] = []
        for (source, r) in parts {
            guard r.spec == first.results.spec else {
                throw HarnessError.data("'\(source)' was produced by a different sweep than '\(first.source)' (spec differs); merge only shards of one sweep (same flags, different --shard)")
            }
            if r.environment.fingerprint != first.results.environment.fingerprint {
                notes.append("'\(source)' ran on another machine (\(r.environment.fingerprint)); ratios stay valid per shard, absolute times are not comparable across shards")
            }
            if !r.complete { notes.append("'\(source)' is incomplete (interrupted); resume it with `dgperf sweep --resume --output DIR` first for a full set") }
            if !environments.contains(where: { $0.fingerprint == r.environment.fingerprint }) {
                environments.append(r.environment)
            }
            for var c in r.cells {
                c.fingerprint = c.fingerprint ?? r.environment.fingerprint
                if let other = origin[c.key] {
                    throw HarnessError.data("cell '\(c.key)' is in both '\(other)' and '\(source)'; the inputs overlap (same shard twice?) — merge each shard once")
                }
                origin[c.key] = source
                merged.cells.append(c)
            }
        }
        let expected = first.results.spec.selectCells(shard: nil, keys: first.results.cellFilter.map(Set.init))
        let order = Dictionary(uniqueKeysWithValues: expected.enumerated().map { ($1.key, $0) })
        merged.sortCells(by: order)
        let missing = expected.count - merged.dgperfCells.count
        merged.complete = missing == 0 && parts.allSatisfy { $0.results.complete }
        if missing > 0 { notes.append("\(missing) of \(expected.count) cells are missing (a shard not given or not finished)") }
        // Each host keeps its own environment block; one-host merges stay as plain as a single run.
        merged.environments = environments.count > 1 ? environments : nil
        if environments.count == 1 { for i in merged.cells.indices { merged.cells[i].fingerprint = nil } }
        merged.updatedAt = now
        merged.recomputeDerived()
        return (merged, notes)
    }
}
