/// Number formatting without Foundation (keeps the static binary small; see scripts/build-static.sh).
public enum Format {
    /// `x` with exactly `digits` decimals, e.g. fixed(3.14159, 2) == "3.14". Non-finite → "nan"/"inf".
    public static func fixed(_ x: Double, _ digits: Int) -> String {
        guard x.isFinite else { return x.isNaN ? "nan" : (x > 0 ? "inf" : "-inf") }
        let scale = pow10(digits)
        let r = (abs(x) * scale).rounded()
        guard r < 9e18 else { return String(x) }
        let q = Int64(r)
        let ip = q / Int64(scale), fp = q % Int64(scale)
        var s = (x < 0 && q != 0 ? "-" : "") + String(ip)
        if digits > 0 {
            let f = String(fp)
            s += "." + String(repeating: "0", count: digits - f.count) + f
        }
        return s
    }

    /// Right-aligns `s` in a field of `width`.
    public static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }

    /// Left-aligns `s` in a field of `width`.
    public static func padRight(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
    }

    static func pow10(_ d: Int) -> Double {
        var p = 1.0
        for _ in 0..<max(d, 0) { p *= 10 }
        return p
    }
}
