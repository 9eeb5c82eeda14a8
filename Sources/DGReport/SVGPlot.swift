import Glibc

/// A small hand-written SVG line/scatter plot (no dependencies): log or linear axes, error bars, legend.
public struct SVGPlot: Sendable {
    public struct Point: Sendable { public var x, y: Double; public var yLow, yHigh: Double?
        public init(x: Double, y: Double, yLow: Double? = nil, yHigh: Double? = nil) { self.x = x; self.y = y; self.yLow = yLow; self.yHigh = yHigh }
    }
    public struct Series: Sendable {
        public var name: String
        public var points: [Point]
        public var dashed: Bool
        public var markers: Bool
        public var color: String?
        public init(name: String, points: [Point], dashed: Bool = false, markers: Bool = true, color: String? = nil) {
            self.name = name; self.points = points; self.dashed = dashed; self.markers = markers; self.color = color
        }
    }
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var xLog: Bool
    public var yLog: Bool
    public var series: [Series]
    public var width = 720.0, height = 460.0

    public init(title: String, xLabel: String, yLabel: String, xLog: Bool, yLog: Bool, series: [Series]) {
        self.title = title; self.xLabel = xLabel; self.yLabel = yLabel; self.xLog = xLog; self.yLog = yLog; self.series = series
    }

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]

    /// `connectMarkers: false` draws data series (those with markers) as a scatter; line-only series stay lines.
    public func render(connectMarkers: Bool = true) -> String {
        let left = 70.0, right = 190.0, top = 40.0, bottom = 55.0
        let pw = width - left - right, ph = height - top - bottom
        let all = series.flatMap(\.points)
        let xs = all.map(\.x).filter { !xLog || $0 > 0 }
        let ys = (all.map(\.y) + all.compactMap(\.yLow) + all.compactMap(\.yHigh)).filter { !yLog || $0 > 0 }
        let (x0, x1) = SVGPlot.range(xs, log: xLog), (y0, y1) = SVGPlot.range(ys, log: yLog)
        func tx(_ v: Double) -> Double { left + pw * (SVGPlot.t(v, xLog) - SVGPlot.t(x0, xLog)) / (SVGPlot.t(x1, xLog) - SVGPlot.t(x0, xLog)) }
        func ty(_ v: Double) -> Double { top + ph * (1 - (SVGPlot.t(v, yLog) - SVGPlot.t(y0, yLog)) / (SVGPlot.t(y1, yLog) - SVGPlot.t(y0, yLog))) }
        func n(_ v: Double) -> String { Format.fixed(v, 1) }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(n(left + pw / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">\(SVGPlot.esc(title))</text>\n"
        // Grid and ticks.
        for v in SVGPlot.ticks(x0, x1, log: xLog) {
            s += "<line x1=\"\(n(tx(v)))\" y1=\"\(n(top))\" x2=\"\(n(tx(v)))\" y2=\"\(n(top + ph))\" stroke=\"#e5e5e5\"/>\n"
            s += "<text x=\"\(n(tx(v)))\" y=\"\(n(top + ph + 16))\" text-anchor=\"middle\">\(SVGPlot.label(v))</text>\n"
        }
        for v in SVGPlot.ticks(y0, y1, log: yLog) {
            s += "<line x1=\"\(n(left))\" y1=\"\(n(ty(v)))\" x2=\"\(n(left + pw))\" y2=\"\(n(ty(v)))\" stroke=\"#e5e5e5\"/>\n"
            s += "<text x=\"\(n(left - 6))\" y=\"\(n(ty(v) + 4))\" text-anchor=\"end\">\(SVGPlot.label(v))</text>\n"
        }
        s += "<rect x=\"\(n(left))\" y=\"\(n(top))\" width=\"\(n(pw))\" height=\"\(n(ph))\" fill=\"none\" stroke=\"#333\"/>\n"
        s += "<text x=\"\(n(left + pw / 2))\" y=\"\(n(height - 14))\" text-anchor=\"middle\">\(SVGPlot.esc(xLabel))</text>\n"
        s += "<text transform=\"translate(18 \(n(top + ph / 2))) rotate(-90)\" text-anchor=\"middle\">\(SVGPlot.esc(yLabel))</text>\n"
        for (i, se) in series.enumerated() {
            let color = se.color ?? SVGPlot.palette[i % SVGPlot.palette.count]
            let pts = se.points.filter { (!xLog || $0.x > 0) && (!yLog || $0.y > 0) }.sorted { $0.x < $1.x }
            if pts.count > 1 && (connectMarkers || !se.markers) {
                let path = pts.map { "\(n(tx($0.x))),\(n(ty($0.y)))" }.joined(separator: " ")
                s += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.8\"\(se.dashed ? " stroke-dasharray=\"6 4\"" : "")/>\n"
            }
            if se.markers {
                for p in pts {
                    if let lo = p.yLow, let hi = p.yHigh, (!yLog || lo > 0) {
                        s += "<line x1=\"\(n(tx(p.x)))\" y1=\"\(n(ty(lo)))\" x2=\"\(n(tx(p.x)))\" y2=\"\(n(ty(hi)))\" stroke=\"\(color)\"/>\n"
                    }
                    s += "<circle cx=\"\(n(tx(p.x)))\" cy=\"\(n(ty(p.y)))\" r=\"3.2\" fill=\"\(color)\"/>\n"
                }
            }
            let ly = top + 8 + Double(i) * 18
            s += "<line x1=\"\(n(left + pw + 12))\" y1=\"\(n(ly))\" x2=\"\(n(left + pw + 36))\" y2=\"\(n(ly))\" stroke=\"\(color)\" stroke-width=\"2\"\(se.dashed ? " stroke-dasharray=\"6 4\"" : "")/>\n"
            s += "<text x=\"\(n(left + pw + 42))\" y=\"\(n(ly + 4))\">\(SVGPlot.esc(se.name))</text>\n"
        }
        return s + "</svg>\n"
    }

    static func t(_ v: Double, _ log: Bool) -> Double { log ? log10(v) : v }

    static func range(_ v: [Double], log: Bool) -> (Double, Double) {
        guard var lo = v.min(), var hi = v.max() else { return log ? (0.1, 10) : (0, 1) }
        if log {
            if lo == hi { lo /= 2; hi *= 2 }
            return (pow(10, floor(log10(lo) * 4) / 4), pow(10, ceil(log10(hi) * 4) / 4))
        }
        if lo == hi { lo -= 1; hi += 1 }
        let pad = (hi - lo) * 0.05
        return (lo > 0 && lo - pad < 0 ? 0 : lo - pad, hi + pad)
    }

    static func ticks(_ lo: Double, _ hi: Double, log: Bool) -> [Double] {
        if log {
            var out: [Double] = []
            var d = pow(10, floor(log10(lo)))
            while d <= hi * 1.0001 {
                for m in [1.0, 2, 5] where d * m >= lo * 0.9999 && d * m <= hi * 1.0001 { out.append(d * m) }
                d *= 10
            }
            return out
        }
        let raw = (hi - lo) / 6
        let mag = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? raw
        var out: [Double] = []
        var v = ceil(lo / step) * step
        while v <= hi + step * 1e-9 { out.append(v); v += step }
        return out
    }

    static func label(_ v: Double) -> String {
        let a = abs(v)
        if a == 0 { return "0" }
        if a >= 1000 || a < 0.01 {
            let e = Int(floor(log10(a)))
            let m = v / pow(10, Double(e))
            return (abs(m - 1) < 1e-9 ? "" : Format.fixed(m, 0) + "·") + "1e\(e)"
        }
        if a == a.rounded() { return Format.fixed(v, 0) }
        return Format.fixed(v, a < 0.1 ? 3 : a < 1 ? 2 : 1)
    }

    static func esc(_ s: String) -> String {
        var o = ""
        for ch in s {
            switch ch { case "<": o += "&lt;"; case ">": o += "&gt;"; case "&": o += "&amp;"; case "\"": o += "&quot;"; default: o.append(ch) }
        }
        return o
    }
}
