/// Tukey's fences: values below Q1 − k·IQR or above Q3 + k·IQR (k = 1.5) are outliers.
/// Quartiles are type-7 percentiles, as in `Summary`. n < 4 never reports outliers (no spread to judge by).
public enum Outliers {
    public static func tukeyCount(_ values: [Double], k: Double = 1.5) -> Int {
        guard values.count >= 4 else { return 0 }
        let (lo, hi) = fences(values, k: k)
        return values.reduce(0) { $0 + ($1 < lo || $1 > hi ? 1 : 0) }
    }

    /// (lower fence, upper fence).
    public static func fences(_ values: [Double], k: Double = 1.5) -> (Double, Double) {
        let s = values.sorted()
        let q1 = Summary.percentile(sorted: s, 0.25), q3 = Summary.percentile(sorted: s, 0.75)
        let iqr = q3 - q1
        return (q1 - k * iqr, q3 + k * iqr)
    }
}
