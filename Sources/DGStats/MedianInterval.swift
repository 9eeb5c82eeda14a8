import Glibc

/// A confidence interval for the median from order statistics (distribution-free).
///
/// For sorted x(1) ≤ … ≤ x(n), [x(l), x(n+1−l)] covers the population median with probability
/// 1 − 2·P(Bin(n, ½) < l). We pick the largest l whose coverage is still ≥ `level`, computed
/// exactly from the binomial distribution (no normal approximation), so small samples get honest,
/// wide intervals. Below n = 6 no pair of order statistics reaches 95 %; the interval is then
/// [min, max] and `coverage` says how much it actually covers (e.g. n = 5: 93.75 %; n = 1: 0).
public struct MedianInterval: Sendable, Codable, Equatable {
    public var lower: Double
    public var upper: Double
    /// The exact coverage probability of [lower, upper] (≥ requested level when n is large enough).
    public var coverage: Double

    public init(lower: Double, upper: Double, coverage: Double) {
        self.lower = lower; self.upper = upper; self.coverage = coverage
    }

    /// Interval around the median of `values` at `level` (default 95 %); nil for empty or non-finite input.
    public init?(_ values: [Double], level: Double = 0.95) {
        guard !values.isEmpty, values.allSatisfy({ $0.isFinite }), level > 0, level < 1 else { return nil }
        let s = values.sorted()
        let n = s.count
        // cdf[i] = P(Bin(n, ½) ≤ i), built in log space to stay finite for large n.
        var best = 1
        var coverage = MedianInterval.coverage(n: n, l: 1)
        var l = 2
        while 2 * l <= n + 1 {
            let c = MedianInterval.coverage(n: n, l: l)
            if c < level { break }
            best = l; coverage = c; l += 1
        }
        lower = s[best - 1]
        upper = s[n - best]
        self.coverage = coverage
    }

    /// Half the width relative to `center` (the repetition policy's stopping rule); 0 when center is 0.
    public func relativeHalfWidth(around center: Double) -> Double {
        center == 0 ? 0 : (upper - lower) / 2 / abs(center)
    }

    /// 1 − 2·P(Bin(n, ½) ≤ l − 1): coverage of [x(l), x(n+1−l)].
    static func coverage(n: Int, l: Int) -> Double {
        guard n >= 2 else { return 0 }
        var tail = 0.0
        let logHalfN = Double(n) * log(0.5)
        for i in 0..<l {
            tail += exp(logChoose(n, i) + logHalfN)
        }
        return max(0, 1 - 2 * tail)
    }

    static func logChoose(_ n: Int, _ k: Int) -> Double {
        lgamma(Double(n + 1)) - lgamma(Double(k + 1)) - lgamma(Double(n - k + 1))
    }
}
