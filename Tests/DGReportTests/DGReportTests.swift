import DGKernels
import DGModels
import XCTest
@testable import DGHarness
@testable import DGReport

/// Results with hand-set timings: dense 1 ms; dg at r = 0.5 / 0.25 / 0.1 takes 1.25 / 0.8 / 0.4 ms.
func sampleResults() -> RunResults {
    let spec = SweepSpec(preset: "test", models: [.dense, .dg], hidden: [[64, 64]], batches: [8], activeFractions: [0.5, 0.25, 0.1],
                         granularities: [1], maskKinds: [.perSample], threads: [1])
    let env = EnvironmentInfo(hostname: "h", os: "Linux", cpuModel: "Test CPU", cpuVendor: "v", cpuFeatures: [], logicalCores: 2,
                              caches: .init(), compiler: "Swift", buildConfiguration: "debug", buildFlags: "-O",
                              measuredCodeOptimized: true, gitCommit: nil, kernel: "fake", blocking: "", pinning: "none",
                              date: "d", dgperfVersion: "t")
    var r = RunResults(spec: spec, shard: nil, cellFilter: nil, environment: env, now: "t")
    let ms: [String: Double] = ["dense": 1.0, "0.5": 1.25, "0.25": 0.8, "0.1": 0.4]
    for c in spec.expandCells() {
        let t = (c.model == .dense ? ms["dense"]! : ms["\(c.activeFraction)"]!) * 1e-3
        let samples = (0..<11).map { t * (1 + 0.002 * Double($0 - 5)) }
        let dense = KernelCost(macs: 8 * (784 * 64 + 64 * 64 + 64 * 10))
        let useful = KernelCost(macs: Int(Double(dense.macs) * c.activeFraction))
        r.cells.append(CellResult(cell: c, status: .ok, measuredAt: "t", masks: "synthetic", peakGflopsPerCore: 100,
                                  timing: CellTiming(samples: samples, innerCalls: 1, warmupCalls: 3, stopReason: .budget),
                                  cost: CostBreakdown(useful: useful, overhead: KernelCost(macs: 1000)), denseCost: dense))
    }
    r.complete = true
    r.recomputeDerived()
    return r
}

final class TableTests: XCTestCase {
    func testBreakEvenCrossing() {
        XCTAssertEqual(BreakEvenTable.crossing([(0.5, 0.8), (0.25, 1.25), (0.1, 2.5)]), .at(0.5 + (0.2 / 0.45) * -0.25))
        XCTAssertEqual(BreakEvenTable.crossing([(0.5, 1.1), (0.1, 3)]), .everywhere(0.5))
        XCTAssertEqual(BreakEvenTable.crossing([(0.5, 0.3), (0.1, 0.9)]), .nowhere(0.1))
        XCTAssertNil(BreakEvenTable.crossing([]))
    }

    func testEfficiencyAndBreakEvenTables() {
        let r = sampleResults()
        let eff = EfficiencyTable.make(r)
        XCTAssertEqual(eff.rows.count, 4)
        let dg25 = eff.rows.first { $0[0] == "dg" && $0[4] == "0.25" }!
        XCTAssertEqual(dg25[8].prefix(4), "1.25")        // speedup 1 ms / 0.8 ms
        XCTAssertEqual(dg25[9], "4.0")                   // ideal 1/r
        XCTAssertEqual(dg25[10], "31%")                  // 1.25 / 4
        XCTAssertEqual(dg25[11], "0.250")                // rel MAC paper
        let be = BreakEvenTable.make(r)
        XCTAssertEqual(be.rows.count, 1)
        // speedup 0.8 at r = 0.5, 1.25 at r = 0.25 → r* = 0.5 − 0.25·(0.2/0.45) = 0.389
        XCTAssertEqual(be.rows[0][6], "0.389")
        XCTAssertEqual(be.rows[0][8], "0.611")
    }

    func testFormats() {
        let t = Table(title: "T", columns: [("a", .left), ("b|c", .right)], rows: [["x_1", "50%"], ["y,z", "1"]], notes: ["n"])
        let md = TableFormat.markdown.render(t)
        XCTAssertTrue(md.contains("| a   | b\\|c |"), md)
        XCTAssertTrue(md.contains("| --- | ---: |"), md)
        let tex = TableFormat.latex.render(t)
        XCTAssertTrue(tex.contains("\\begin{tabular}{lr}") && tex.contains("x\\_1 & 50\\%"), tex)
        XCTAssertEqual(TableFormat.csv.render(t), "a,b|c\nx_1,50%\n\"y,z\",1\n")
    }

    func testCSVReporterHasOneRowPerCellAndStableColumns() {
        let r = sampleResults()
        let lines = CSVReporter().render(r).split(separator: "\n")
        XCTAssertEqual(lines.count, 1 + r.cells.count)
        XCTAssertEqual(lines[0].split(separator: ",").count, CSVReporter.columns.count)
        XCTAssertTrue(lines[1].hasPrefix("dense h=64x64 b=8 t=1,ok,"))
    }

    func testCompareTableNamesRegressedCell() {
        let base = sampleResults()
        var new = base
        let i = new.cells.firstIndex { $0.cell.model == .dg && $0.cell.activeFraction == 0.1 }!
        new.cells[i].timing = CellTiming(samples: new.cells[i].timing!.samples.map { $0 * 1.3 }, innerCalls: 1, warmupCalls: 3, stopReason: .budget)
        new.recomputeDerived()
        let report = Compare.compare(base: base, new: new)
        let t = ComparisonTable.make(report)
        XCTAssertEqual(t.rows.first?[0], "REGRESSED")
        XCTAssertEqual(t.rows.first?[1], new.cells[i].key)
        XCTAssertTrue(TableFormat.markdown.render(t).contains("-23.1%"))
    }
}

final class PlotTests: XCTestCase {
    func testFiguresAreWellFormedSVG() {
        let (figs, skipped) = Plots.all(sampleResults())
        XCTAssertEqual(figs.map(\.name), ["speedup-vs-active-dg", "time-vs-flops"])
        XCTAssertEqual(skipped.count, 2)  // no random cells, one thread count
        for f in figs {
            XCTAssertTrue(f.svg.hasPrefix("<svg") && f.svg.hasSuffix("</svg>\n"))
            XCTAssertFalse(f.svg.contains("nan") || f.svg.contains("inf"), f.name)
            XCTAssertEqual(f.svg.components("<svg"), 1)
        }
        XCTAssertTrue(figs[0].svg.contains("ideal 1/r"))
    }

    func testTicks() {
        XCTAssertEqual(SVGPlot.ticks(0.1, 1, log: true), [0.1, 0.2, 0.5, 1])
        XCTAssertEqual(SVGPlot.ticks(0, 10, log: false), [0, 2, 4, 6, 8, 10])
        XCTAssertEqual(SVGPlot.label(0.25), "0.25")
        XCTAssertEqual(SVGPlot.label(1e-3), "1e-3")
    }

    func testProgressDurations() {
        XCTAssertEqual(ProgressDisplay.duration(65), "1:05")
        XCTAssertEqual(ProgressDisplay.duration(3 * 3600 + 4 * 60), "3h04m")
    }
}

extension String {
    func components(_ s: String) -> Int {
        var n = 0, rest = Substring(self)
        while let r = rest.firstRange(of: s) { n += 1; rest = rest[r.upperBound...] }
        return n
    }
}
