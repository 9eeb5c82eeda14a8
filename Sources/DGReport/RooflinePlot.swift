import DGHarness
import DGKernels

/// The measured roofline (FMA peak for the run's threads; DRAM triad bandwidth; cache-level triads of one
/// core, dashed) with every profiled phase that has FLOPs and bytes placed on it. Phases without FLOPs
/// (pack, gather, mask) cannot sit on a FLOP roofline; their GB/s against the DRAM roof is listed in a footnote.
public enum RooflinePlot {
    public static func svg(_ r: ProfileReport) -> String {
        let peak = r.peakGflops, bw = r.memoryGigabytesPerSecond
        let placed = r.phases.filter { ($0.arithmeticIntensity ?? 0) > 0 && ($0.gflops ?? 0) > 0 }
        let ridge = bw > 0 ? peak / bw : 1
        let cacheRidges = ["L1", "L2", "L3"].compactMap { r.limits.bandwidth($0, threads: 1) }.filter { $0 > 0 }.map { peak / $0 }
        let ais = placed.compactMap(\.arithmeticIntensity) + [ridge] + cacheRidges
        let x0 = max(1e-3, (ais.min() ?? 1) / 4), x1 = (ais.max() ?? 1) * 4
        var series: [SVGPlot.Series] = []
        if bw > 0 && peak > 0 {
            let pts = [x0, ridge, x1].filter { $0 >= x0 && $0 <= x1 }.map { SVGPlot.Point(x: $0, y: min(peak, bw * $0)) }
            series.append(.init(name: "roof \(fmt(peak)) / \(fmt(bw))", points: pts, markers: false, color: "#333333"))
        }
        for level in ["L1", "L2", "L3"] {
            guard let b = r.limits.bandwidth(level, threads: 1), b > 0 else { continue }
            let ridgeL = peak / b
            let pts = [x0, min(max(ridgeL, x0), x1), x1].map { SVGPlot.Point(x: $0, y: min(peak, b * $0)) }
            series.append(.init(name: "\(level) \(fmt(b)) GB/s 1c", points: pts, dashed: true, markers: false, color: "#999999"))
        }
        for p in placed {
            series.append(.init(name: "\(p.layerName) \(p.phase.rawValue) (\(fmt(p.share * 100))%)",
                                points: [SVGPlot.Point(x: p.arithmeticIntensity!, y: p.gflops!)]))
        }
        let s = r.spec
        var plot = SVGPlot(title: "Roofline: \(s.kind.rawValue) \(s.dims.map(String.init).joined(separator: "→")) batch \(r.batch), \(r.threads) thread\(r.threads == 1 ? "" : "s") (\(r.kernel)); roof = FMA peak GFLOP/s / DRAM GB/s",
                           xLabel: "arithmetic intensity (FLOP/byte)", yLabel: "GFLOP/s", xLog: true, yLog: true, series: series)
        plot.width = 900
        var svg = plot.render(connectMarkers: false)
        let off = r.phases.filter { ($0.gflops ?? 0) == 0 && $0.medianSeconds > 0 && $0.share >= 0.005 }
        if !off.isEmpty {
            // Footnote lines under the plot: the SVG grows by one line each.
            var lines = ["not placeable (no FLOPs; share of time, GB/s):"]
            for p in off {
                let item = "\(p.layerName) \(p.phase.rawValue) \(fmt(p.share * 100))%" + (p.gigabytesPerSecond.map { " at \(fmt($0)) GB/s" } ?? "")
                if lines.count > 1 && lines[lines.count - 1].count + item.count < 120 { lines[lines.count - 1] += "; " + item } else { lines.append(item) }
            }
            let h0 = Int(plot.height), w = Int(plot.width), h1 = h0 + 14 * lines.count + 6
            svg = svg.replacingFirst("height=\"\(h0)\" viewBox=\"0 0 \(w) \(h0)\"", with: "height=\"\(h1)\" viewBox=\"0 0 \(w) \(h1)\"")
            var footnote = ""
            for (i, line) in lines.enumerated() {
                footnote += "<text x=\"70\" y=\"\(h0 + 14 * i + 4)\" font-size=\"11\" fill=\"#555\">\(SVGPlot.esc(line))</text>\n"
            }
            if svg.hasSuffix("</svg>\n") { svg = String(svg.dropLast("</svg>\n".count)) + footnote + "</svg>\n" }
        }
        return svg
    }

    static func fmt(_ x: Double) -> String { Format.fixed(x, x >= 100 ? 0 : 1) }
}

extension String {
    /// The string with the first occurrence of `target` replaced (unchanged when absent).
    func replacingFirst(_ target: String, with replacement: String) -> String {
        let chars = Array(self), t = Array(target)
        guard !t.isEmpty, chars.count >= t.count else { return self }
        for i in 0...(chars.count - t.count) where chars[i] == t[0] && Array(chars[i..<(i + t.count)]) == t {
            return String(chars[..<i]) + replacement + String(chars[(i + t.count)...])
        }
        return self
    }
}
