import Glibc

/// Two-sided Mann–Whitney U (Wilcoxon rank-sum) test with the normal approximation,
/// tie-corrected variance and a continuity correction.
///
/// Used by `dgperf compare` to ask whether two sets of repetitions differ by more than noise.
/// `u` is U of sample `a` (the number of pairs with a > b, ties counting ½); `pValue` is two-sided.
/// When every value is tied (zero variance) the samples are indistinguishable: z = 0, p = 1.
/// The normal approximation is rough below about 8 values per side; callers should also
/// require a minimum effect size (compare does).
public struct MannWhitneyU: Sendable, Codable, Equatable {
    public var u: Double
    public var z: Double
    public var pValue: Double
    /// P(a > b) + ½·P(a = b): the common-language effect size (0.5 = no shift).
    public var probabilityAGreater: Double

    public init?(_ a: [Double], _ b: [Double]) {
        let n1 = a.count, n2 = b.count
        guard n1 > 0, n2 > 0, (a + b).allSatisfy({ $0.isFinite }) else { return nil }
        // Mid-ranks over the pooled sample.
        let pooled = (a.map { ($0, 0) } + b.map { ($0, 1) }).sorted { $0.0 < $1.0 }
        var rankSumA = 0.0
        var tieTerm = 0.0  // Σ (t³ − t) over tie groups
        var i = 0
        while i < pooled.count {
            var j = i
            while j + 1 < pooled.count && pooled[j + 1].0 == pooled[i].0 { j += 1 }
            let midRank = Double(i + j) / 2 + 1
            let t = Double(j - i + 1)
            tieTerm += t * t * t - t
            for k in i...j where pooled[k].1 == 0 { rankSumA += midRank }
            i = j + 1
        }
        let dn1 = Double(n1), dn2 = Double(n2), n = dn1 + dn2
        u = rankSumA - dn1 * (dn1 + 1) / 2
        probabilityAGreater = u / (dn1 * dn2)
        let mean = dn1 * dn2 / 2
        let variance = dn1 * dn2 / 12 * ((n + 1) - tieTerm / (n * (n - 1)))
        guard variance > 0 else { z = 0; pValue = 1; return }
        let diff = u - mean
        let corrected = diff == 0 ? 0 : (abs(diff) - 0.5) * (diff > 0 ? 1 : -1)
        z = corrected / variance.squareRoot()
        pValue = min(1, erfc(abs(z) / 2.0.squareRoot()))
    }
}
