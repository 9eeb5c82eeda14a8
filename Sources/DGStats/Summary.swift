/// Order statistics and spread of a sample of measurements (seconds, GFLOP/s, …).
///
/// Percentiles use linear interpolation between closest ranks (type 7, the numpy/R default).
/// n = 1 gives min = median = p95 = max and stddev 0. Empty samples are rejected by `init?`.
public struct Summary: Sendable, Codable, Equatable {
    public var count: Int
    public var min: Double
    public var max: Double
    public var mean: Double
    public var median: Double
    public var p05: Double
    public var p25: Double
    public var p75: Double
    public var p95: Double
    /// Sample standard deviation (n − 1); 0 for n = 1.
    public var stddev: Double

    public init?(_ values: [Double]) {
        guard !values.isEmpty, values.allSatisfy({ $0.isFinite }) else { return nil }
        let s = values.sorted()
        count = s.count
        min = s[0]; max = s[s.count - 1]
        mean = s.reduce(0, +) / Double(s.count)
        median = Summary.percentile(sorted: s, 0.5)
        p05 = Summary.percentile(sorted: s, 0.05)
        p25 = Summary.percentile(sorted: s, 0.25)
        p75 = Summary.percentile(sorted: s, 0.75)
        p95 = Summary.percentile(sorted: s, 0.95)
        if s.count > 1 {
            let m = mean
            stddev = (s.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(s.count - 1)).squareRoot()
        } else {
            stddev = 0
        }
    }

    /// Type-7 percentile of already-sorted values, q in [0, 1].
    public static func percentile(sorted s: [Double], _ q: Double) -> Double {
        precondition(!s.isEmpty && q >= 0 && q <= 1)
        let h = Double(s.count - 1) * q
        let lo = Int(h.rounded(.down)), hi = Swift.min(lo + 1, s.count - 1)
        return s[lo] + (h - Double(lo)) * (s[hi] - s[lo])
    }
}
