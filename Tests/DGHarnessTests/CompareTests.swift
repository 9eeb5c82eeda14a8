import XCTest
@testable import DGHarness

final class CompareTests: XCTestCase {
    let gatedKey = "dg h=16x16 b=4 t=1 r=0.25 g=1 mask=per-sample"

    func testIdenticalRunsHaveNoRegression() throws {
        let r = try fakeRun()
        let report = Compare.compare(base: r, new: r)
        XCTAssertFalse(report.hasRegression)
        XCTAssertTrue(report.sameMachine)
        XCTAssertEqual(report.metrics, [.speedup, .peakFraction, .time])
        XCTAssertFalse(report.rows.isEmpty)
        XCTAssertTrue(report.rows.allSatisfy { $0.verdict == .unchanged })
    }

    func testThirtyPercentSlowdownOfOneCellIsARegressionNamingIt() throws {
        let base = try fakeRun()
        let slow = FakeMeasurer(); slow.slowdown[gatedKey] = 1.3
        let new = try fakeRun(measurer: slow)
        let report = Compare.compare(base: base, new: new)
        XCTAssertTrue(report.hasRegression)
        XCTAssertEqual(report.regressedKeys, [gatedKey])
        XCTAssertEqual(Set(report.regressions.map(\.metric)), [.speedup, .peakFraction, .time])
        let sp = report.regressions.first { $0.metric == .speedup }!
        XCTAssertEqual(sp.change, 1 / 1.3 - 1, accuracy: 0.02)
        XCTAssertLessThan(sp.pValue, 0.01)
    }

    func testNoiseWithinSpreadIsNotARegression() throws {
        let noisy = FakeMeasurer(); noisy.noise = 0.15
        let base = try fakeRun(measurer: noisy)
        let noisy2 = FakeMeasurer(); noisy2.noise = 0.15; noisy2.slowdown[gatedKey] = 1.05
        let new = try fakeRun(measurer: noisy2)
        XCTAssertFalse(Compare.compare(base: base, new: new).hasRegression)
        // A large shift inside huge spread is not evidence either: one sample set 30 % slower but ±90 % noisy.
        var wide = new
        let i = wide.cells.firstIndex { $0.key == gatedKey }!
        let t = wide.cells[i].timing!
        let samples = t.samples.enumerated().map { $0.element * ($0.offset % 2 == 0 ? 0.4 : 2.2) }
        wide.cells[i].timing = CellTiming(samples: samples, innerCalls: 1, warmupCalls: 3, stopReason: .budget)
        wide.recomputeDerived()
        let r = Compare.compare(base: base, new: wide)
        XCTAssertFalse(r.regressions.contains { $0.key == gatedKey && $0.metric == .speedup }, "\(r.regressions)")
    }

    /// A cell whose cost model chose another strategy (different executed MACs) is not compared on fraction of peak,
    /// and the report says which; speedup and time still are.
    func testPeakFractionSkippedWhenExecutedWorkDiffers() throws {
        let base = try fakeRun()
        var new = base
        let i = new.cells.firstIndex { $0.key == gatedKey }!
        var cost = new.cells[i].cost!
        cost.wasted.macs += cost.total.macs  // as if dense-then-mask had run: twice the executed work
        new.cells[i].cost = cost
        let report = Compare.compare(base: base, new: new)
        XCTAssertFalse(report.rows.contains { $0.key == gatedKey && $0.metric == .peakFraction })
        XCTAssertTrue(report.rows.contains { $0.key == gatedKey && $0.metric == .speedup })
        XCTAssertTrue(report.rows.contains { $0.key == gatedKey && $0.metric == .time })
        XCTAssertTrue(report.notes.contains { $0.contains("peak-fraction not compared") && $0.contains(gatedKey) }, "\(report.notes)")
        XCTAssertFalse(report.hasRegression)
    }

    func testDifferentMachineComparesRatiosOnlyAndSaysSo() throws {
        let base = try fakeRun()
        let new = try fakeRun(env: testEnvironment(fingerprintCPU: "Other CPU"))
        let report = Compare.compare(base: base, new: new)
        XCTAssertFalse(report.sameMachine)
        XCTAssertEqual(report.metrics, [.speedup, .peakFraction])
        XCTAssertFalse(report.rows.contains { $0.metric == .time })
        XCTAssertTrue(report.notes.contains { $0.contains("ratios only") })
    }

    func testMissingCellsAreReportedNotCrashed() throws {
        let base = try fakeRun()
        var new = base
        new.cells.removeAll { $0.key == gatedKey }
        new.cells.append(CellResult(cell: Cell(model: .dense, hidden: [99], batch: 1, threads: 1), status: .ok, measuredAt: "", masks: "synthetic",
                                    timing: CellTiming(samples: [1, 1, 1], innerCalls: 1, warmupCalls: 1, stopReason: .budget),
                                    cost: .init(), denseCost: .init()))
        let report = Compare.compare(base: base, new: new)
        XCTAssertEqual(report.missingInNew, [gatedKey])
        XCTAssertEqual(report.missingInBase, ["dense h=99 b=1 t=1"])
        XCTAssertFalse(report.hasRegression)
    }

    func testPerMetricThresholdAndOnlyKeys() throws {
        let base = try fakeRun()
        let slow = FakeMeasurer(); slow.slowdown[gatedKey] = 1.3
        let new = try fakeRun(measurer: slow)
        var o = CompareOptions()
        o.metricThresholds = [.speedup: 0.5, .peakFraction: 0.5, .time: 0.5]
        XCTAssertFalse(Compare.compare(base: base, new: new, options: o).hasRegression)
        var only = CompareOptions(); only.onlyKeys = ["dense h=16x16 b=1 t=1"]
        XCTAssertFalse(Compare.compare(base: base, new: new, options: only).hasRegression)
        XCTAssertEqual(try Compare.parseThreshold("10%", flag: "--threshold"), 0.1, accuracy: 1e-12)
        XCTAssertEqual(try Compare.parseMetricThreshold("time=0.2").1, 0.2)
    }

    func testBaselineUpdateAndSelect() throws {
        let dir = tempDir() + "/baselines"
        XCTAssertNil(Baseline.select(fingerprint: "x", directory: dir))
        let r = try fakeRun()
        let p = try Baseline.update(from: r, source: "r", directory: dir)
        XCTAssertEqual(p, "\(dir)/\(r.environment.fingerprint).json")
        XCTAssertEqual(Baseline.select(fingerprint: r.environment.fingerprint, directory: dir)?.exact, true)
        let other = Baseline.select(fingerprint: "other-machine", directory: dir)
        XCTAssertEqual(other?.path, p); XCTAssertEqual(other?.exact, false)
        var partial = r; partial.complete = false
        XCTAssertThrowsError(try Baseline.update(from: partial, source: "r", directory: dir))
    }
}
