import FoundationEssentials

/// Committed baselines: `results/baselines/<machine-fingerprint>.json`, one per machine and build.
public enum Baseline {
    public static let defaultDirectory = "results/baselines"

    public static func path(fingerprint: String, directory: String = defaultDirectory) -> String {
        "\(directory)/\(fingerprint).json"
    }

    /// Writes `results` as the baseline of the machine that produced it (atomic). Incomplete runs are refused.
    @discardableResult
    public static func update(from results: RunResults, source: String, directory: String = defaultDirectory) throws -> String {
        guard results.complete else {
            throw HarnessError.data("'\(source)' is an incomplete sweep; finish it (`dgperf sweep --resume --output DIR`) before making it a baseline")
        }
        guard results.cells.contains(where: { $0.status == .ok }) else {
            throw HarnessError.data("'\(source)' has no measured cells; a baseline needs at least one")
        }
        try AtomicFile.makeWritableDirectory(directory)
        let p = path(fingerprint: results.environment.fingerprint, directory: directory)
        try AtomicFile.write(ResultsStore.encode(results), to: p)
        return p
    }

    /// The baseline for `fingerprint`: the exact one if committed (exact = true), else the newest other
    /// baseline (compare then uses same-run ratios only). nil when the directory holds none.
    public static func select(fingerprint: String, directory: String = defaultDirectory) -> (path: String, exact: Bool)? {
        let exact = path(fingerprint: fingerprint, directory: directory)
        if AtomicFile.exists(exact) { return (exact, true) }
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return nil }
        let candidates = names.filter { $0.hasSuffix(".json") }.compactMap { name -> (String, String)? in
            let p = directory + "/" + name
            guard let r = try? ResultsStore.load(p) else { return nil }
            return (r.updatedAt, p)
        }
        return candidates.max { $0.0 < $1.0 }.map { ($0.1, false) }
    }
}
