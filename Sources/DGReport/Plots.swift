import DGHarness
import DGModels
import Glibc

/// The sweep's standard figures. Each returns nil (with the reason) when the run has no data for it.
public enum Plots {
    public struct Figure: Sendable { public var name: String; public var svg: String }

    public static func all(_ results: RunResults) -> (figures: [Figure], skipped: [String]) {
        var figs: [Figure] = [], skipped: [String] = []
        for kind in [ModelKind.dg, .random] {
            switch speedupVsActive(results, model: kind) {
            case .success(let f): figs.append(f)
            case .failure(let why): skipped.append(why.message)
            }
        }
        switch timeVsFlops(results) { case .success(let f): figs.append(f); case .failure(let why): skipped.append(why.message) }
        switch scalingVsThreads(results) { case .success(let f): figs.append(f); case .failure(let why): skipped.append(why.message) }
        return (figs, skipped)
    }

    public struct NoData: Error { public var message: String }

    static func ok(_ r: RunResults) -> [CellResult] { r.dgperfCells.filter { $0.status == .ok && $0.derived != nil } }

    /// Speedup over dense vs active fraction, one line per batch size, with the ideal 1/r and break-even (1×) lines.
    /// Fixed: the first hidden shape, thread count, granularity and mask kind of the sweep (named in the title).
    public static func speedupVsActive(_ results: RunResults, model: ModelKind) -> Result<Figure, NoData> {
        let spec = results.spec
        let cells = ok(results).filter { $0.cell.model == model && $0.derived?.speedup != nil }
        guard let c0 = cells.first?.cell else { return .failure(NoData(message: "speedup-vs-active-\(model.rawValue): no measured \(model.rawValue) cells")) }
        let sel = cells.filter { $0.cell.hidden == c0.hidden && $0.cell.threads == c0.threads && $0.cell.granularity == c0.granularity && $0.cell.maskKind == c0.maskKind }
        var series: [SVGPlot.Series] = []
        for b in spec.batches {
            let pts = sel.filter { $0.cell.batch == b }.map { x in
                SVGPlot.Point(x: x.cell.activeFraction, y: x.derived!.speedup!, yLow: x.derived!.speedupLow, yHigh: x.derived!.speedupHigh)
            }
            if !pts.isEmpty { series.append(.init(name: "batch \(b)", points: pts)) }
        }
        let rs = sel.map(\.cell.activeFraction)
        let rmin = rs.min()!, rmax = rs.max()!
        let grid = (0...20).map { rmin * pow(rmax / rmin, Double($0) / 20) }
        series.append(.init(name: "ideal 1/r", points: grid.map { SVGPlot.Point(x: $0, y: 1 / $0) }, dashed: true, markers: false, color: "#555"))
        series.append(.init(name: "dense (1×)", points: [.init(x: rmin, y: 1), .init(x: rmax, y: 1)], dashed: true, markers: false, color: "#aaa"))
        let plot = SVGPlot(title: "\(model.rawValue): speedup over dense vs active fraction (h=\(c0.hidden.map(String.init).joined(separator: "x")), G=\(c0.granularity ?? 1), \(c0.maskKind?.rawValue ?? ""), \(c0.threads) thr)",
                           xLabel: "active fraction r (log)", yLabel: "speedup over dense (log)", xLog: true, yLog: true, series: series)
        return .success(Figure(name: "speedup-vs-active-\(model.rawValue)", svg: plot.render()))
    }

    /// Roofline-style: median time vs executed FLOPs per call, one series per model, with the peak-FLOP/s line.
    public static func timeVsFlops(_ results: RunResults) -> Result<Figure, NoData> {
        let cells = ok(results).filter { $0.cell.threads == results.spec.threads.first }
        guard !cells.isEmpty else { return .failure(NoData(message: "time-vs-flops: no measured cells")) }
        var series: [SVGPlot.Series] = []
        for kind in ModelKind.allCases {
            let pts = cells.filter { $0.cell.model == kind }.compactMap { c -> SVGPlot.Point? in
                guard let cost = c.cost, let t = c.timing else { return nil }
                return .init(x: cost.total.flops / 1e6, y: t.summary.median * 1e3, yLow: t.medianCI.lower * 1e3, yHigh: t.medianCI.upper * 1e3)
            }
            if !pts.isEmpty { series.append(.init(name: kind.rawValue, points: pts)) }
        }
        var plot = SVGPlot(title: "time vs executed FLOPs (\(results.spec.threads.first ?? 1) thread\((results.spec.threads.first ?? 1) == 1 ? "" : "s"))",
                           xLabel: "executed MFLOP per forward call (log)", yLabel: "median ms per call (log)", xLog: true, yLog: true, series: series)
        if let peak = cells.compactMap(\.peakGflopsPerCore).max() {
            let xs = cells.compactMap { $0.cost?.total.flops }.filter { $0 > 0 }
            if let lo = xs.min(), let hi = xs.max() {
                let threads = Double(results.spec.threads.first ?? 1)
                plot.series.append(.init(name: "measured FMA peak", points: [lo, hi].map { .init(x: $0 / 1e6, y: $0 / (peak * threads * 1e9) * 1e3) },
                                         dashed: true, markers: false, color: "#555"))
            }
        }
        return .success(Figure(name: "time-vs-flops", svg: plot.render(connectMarkers: false)))
    }

    /// Speedup of each cell over the same cell at the smallest thread count, vs threads, with the ideal line.
    public static func scalingVsThreads(_ results: RunResults) -> Result<Figure, NoData> {
        let threads = results.spec.threads.sorted()
        guard threads.count > 1, let t0 = threads.first else { return .failure(NoData(message: "scaling-vs-threads: the sweep used one thread count")) }
        let cells = ok(results)
        var base: [String: Double] = [:]
        func ident(_ c: Cell) -> String { var x = c; x.threads = 0; return x.key }
        for c in cells where c.cell.threads == t0 { base[ident(c.cell)] = c.timing!.summary.median }
        var series: [SVGPlot.Series] = []
        let h0 = results.spec.hidden.first
        for kind in [ModelKind.dense, .dropout, .dg, .random, .moe] {
            for b in results.spec.batches {
                // One representative per model and batch: dense-like models, or gated at the first r/G/mask.
                let sel = cells.filter { $0.cell.model == kind && $0.cell.batch == b && $0.cell.hidden == h0 &&
                    (!Cell.isGated(kind) || ($0.cell.activeFraction == results.spec.activeFractions.first && $0.cell.granularity == results.spec.granularities.first && $0.cell.maskKind == results.spec.maskKinds.first)) }
                let pts = sel.compactMap { c -> SVGPlot.Point? in
                    guard let b0 = base[ident(c.cell)] else { return nil }
                    return .init(x: Double(c.cell.threads), y: b0 / c.timing!.summary.median)
                }
                if pts.count > 1 { series.append(.init(name: "\(kind.rawValue) b=\(b)", points: pts)) }
            }
        }
        guard !series.isEmpty else { return .failure(NoData(message: "scaling-vs-threads: no cell measured at several thread counts")) }
        series.append(.init(name: "ideal", points: threads.map { .init(x: Double($0), y: Double($0) / Double(t0)) }, dashed: true, markers: false, color: "#555"))
        let plot = SVGPlot(title: "scaling vs threads (h=\(h0.map { $0.map(String.init).joined(separator: "x") } ?? ""))", xLabel: "threads",
                           yLabel: "speedup over \(t0) thread\(t0 == 1 ? "" : "s")", xLog: false, yLog: false, series: series)
        return .success(Figure(name: "scaling-vs-threads", svg: plot.render()))
    }
}

