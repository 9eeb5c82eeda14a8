import DGKernels
import DGModels
import DGStats
import XCTest
@testable import DGHarness

final class CellExpansionTests: XCTestCase {
    func testOrderKeysAndDenseReferences() {
        let cells = tinySpec().expandCells()
        // per shape group: dense, dropout, dg × 2 r × 2 G, moe = 7; groups: 2 hidden × 2 threads × 2 batches = 8
        XCTAssertEqual(cells.count, 56)
        XCTAssertEqual(Set(cells.map(\.key)).count, cells.count, "keys are unique")
        XCTAssertEqual(cells[0].key, "dense h=16x16 b=1 t=1")
        XCTAssertEqual(cells[2].key, "dg h=16x16 b=1 t=1 r=0.5 g=1 mask=per-sample")
        XCTAssertEqual(cells[6].key, "moe h=16x16 b=1 t=1 e=8 k=2")
        XCTAssertEqual(cells[6].activeFraction, 0.25)
        XCTAssertEqual(tinySpec().expandCells(), cells, "deterministic")
        var noDense = tinySpec(); noDense.models = [.dg]
        XCTAssertEqual(noDense.expandCells().filter { $0.model == .dense }.count, 8, "dense reference added per shape")
    }

    func testSparsityRecordedAlongsideActiveFraction() throws {
        var req = SweepRequest(); req.preset = "quick"; req.sparsity = "0.9,0.5"
        let spec = try req.resolve(hostname: "h", stamp: "s").spec
        XCTAssertEqual(spec.activeFractions, [0.1, 0.5])
        let c = spec.expandCells().first { $0.model == .dg }!
        XCTAssertEqual(c.activeFraction, 0.1); XCTAssertEqual(c.sparsity, 0.9)
    }

    func testShardsPartitionTheCellSetByShapeGroup() {
        let spec = tinySpec()
        let all = spec.expandCells().map(\.key)
        var union: [String] = []
        for k in 1...3 {
            let part = spec.selectCells(shard: Shard(index: k, count: 3))
            union += part.map(\.key)
            for g in Set(part.map(\.groupKey)) {
                XCTAssertTrue(part.contains { $0.groupKey == g && $0.model == .dense }, "every shard holds its groups' dense cell")
            }
        }
        XCTAssertEqual(union.sorted(), all.sorted())
        XCTAssertEqual(Set(union).count, union.count)
    }

    func testPresetsAreValidAndSized() throws {
        for p in SweepPreset.allCases { XCTAssertNoThrow(try p.spec.validate(), p.rawValue) }
        XCTAssertLessThanOrEqual(SweepPreset.quick.spec.expandCells().count, 60)
        // default: ≤ ~10 min on 2 cores at its per-cell budget (+ warm-up and overhead)
        let d = SweepPreset.default.spec
        let perCell = d.repetition.budgetSeconds + d.repetition.warmupSeconds + 0.3
        XCTAssertLessThan(Double(d.expandCells().count) * perCell, 540)
    }
}

final class RepetitionPolicyTests: XCTestCase {
    func testStopsAtTargetCIOrBudgetAfterMinReps() {
        let p = RepetitionPolicy(minReps: 5, maxReps: 50, budgetSeconds: 1, targetRelativeCI: 0.05)
        XCTAssertNil(p.stopReason(samples: [1, 1, 1, 1], timedSeconds: 10), "min reps first")
        XCTAssertEqual(p.stopReason(samples: [Double](repeating: 1, count: 6), timedSeconds: 0), .targetCI)
        let noisy = (0..<6).map { Double($0 % 2 == 0 ? 1 : 2) }
        XCTAssertNil(p.stopReason(samples: noisy, timedSeconds: 0.5))
        XCTAssertEqual(p.stopReason(samples: noisy, timedSeconds: 1.5), .budget)
        XCTAssertEqual(p.stopReason(samples: [Double](repeating: 1, count: 50).enumerated().map { Double($0.offset % 3) + 1 }, timedSeconds: 0), .maxReps)
        XCTAssertEqual(p.innerCalls(singleCallSeconds: 1e-5, cold: false), 100)
        XCTAssertEqual(p.innerCalls(singleCallSeconds: 1e-5, cold: true), 1)
        XCTAssertEqual(p.innerCalls(singleCallSeconds: 1, cold: false), 1)
    }
}

final class ResultsTests: XCTestCase {
    func testSchemaRoundTripAndDerivedFigures() throws {
        let r = try fakeRun()
        XCTAssertTrue(r.complete)
        let text = ResultsStore.encode(r)
        XCTAssertTrue(text.contains("dgperf.results/1"))
        let back = try ResultsStore.decode(text, source: "mem")
        XCTAssertEqual(back, r)
        let dg = r.cell("dg h=16x16 b=4 t=1 r=0.25 g=1 mask=per-sample")!
        let d = dg.derived!
        XCTAssertEqual(d.idealSpeedup, 4)
        XCTAssertEqual(d.relativeMacPaper, 0.25, accuracy: 0.01)
        XCTAssertNotNil(d.speedup); XCTAssertGreaterThan(d.speedup!, 1)
        XCTAssertLessThanOrEqual(d.speedupLow!, d.speedup!); XCTAssertGreaterThanOrEqual(d.speedupHigh!, d.speedup!)
        XCTAssertEqual(d.fractionOfIdeal!, d.speedup! / 4, accuracy: 1e-12)
        XCTAssertEqual(r.cell("dense h=16x16 b=4 t=1")!.derived!.speedup, 1)
        XCTAssertNotNil(d.fractionOfPeak)
    }

    func testSkippedCellsAreRecordedNotFailed() throws {
        let m = FakeMeasurer(); m.skipKinds = [.dg, .moe]
        let r = try fakeRun(measurer: m)
        XCTAssertTrue(r.complete)
        let dg = r.cells.filter { $0.cell.model == .dg }
        XCTAssertFalse(dg.isEmpty)
        XCTAssertTrue(dg.allSatisfy { $0.status == .skipped && $0.reason!.contains("not implemented") && $0.derived == nil })
    }

    func testResumeAfterSimulatedKillLosesNothingAndDuplicatesNothing() throws {
        let dir = tempDir()
        let spec = tinySpec()
        let killed = FakeMeasurer(); killed.killAfter = 9
        let store = ResultsStore(directory: dir)
        XCTAssertThrowsError(try SweepRunner(spec: spec, shard: nil, store: store, measurer: killed).run(environment: testEnvironment()))
        let partial = try ResultsStore.load(dir)
        XCTAssertFalse(partial.complete)
        XCTAssertEqual(partial.cells.count, 9, "every finished cell was written before the kill")
        let resumed = FakeMeasurer()
        let (outcome, full) = try SweepRunner(spec: spec, shard: nil, store: store, measurer: resumed)
            .run(environment: testEnvironment(), existing: partial)
        XCTAssertEqual(outcome, .completed)
        XCTAssertEqual(resumed.calls.count, spec.expandCells().count - 9, "finished cells are not re-measured")
        XCTAssertTrue(Set(resumed.calls).isDisjoint(with: Set(partial.cells.map(\.key))))
        XCTAssertEqual(full.cells.map(\.key), spec.expandCells().map(\.key), "all cells once, in sweep order")
        XCTAssertEqual(try ResultsStore.load(dir), full)
        // Resuming a complete run does nothing.
        let again = FakeMeasurer()
        _ = try SweepRunner(spec: spec, shard: nil, store: store, measurer: again).run(environment: testEnvironment(), existing: full)
        XCTAssertTrue(again.calls.isEmpty)
    }

    func testResumeRefusesAnotherSweep() throws {
        let r = try fakeRun()
        var other = tinySpec(); other.batches = [8]
        let runner = SweepRunner(spec: other, shard: nil, store: ResultsStore(directory: tempDir()), measurer: FakeMeasurer())
        XCTAssertThrowsError(try runner.run(environment: testEnvironment(), existing: r)) { e in
            XCTAssertTrue((e as! HarnessError).message.contains("different sweep"))
        }
    }

    func testInterruptStopsBetweenCellsAndKeepsFinishedOnes() throws {
        final class InterruptingMeasurer: FakeMeasurer {
            override func measure(_ cell: Cell, spec: SweepSpec) throws -> CellMeasurement {
                if calls.count == 4 { Interrupt.set(true) }
                return try super.measure(cell, spec: spec)
            }
        }
        defer { Interrupt.set(false) }
        let dir = tempDir()
        let (outcome, r) = try SweepRunner(spec: tinySpec(), shard: nil, store: ResultsStore(directory: dir), measurer: InterruptingMeasurer())
            .run(environment: testEnvironment())
        XCTAssertEqual(outcome, .interrupted(done: 5, total: 56))
        XCTAssertEqual(try ResultsStore.load(dir).cells.count, 5)
        XCTAssertFalse(r.complete)
    }

    func testShardThenMergeEqualsFullRunCellSet() throws {
        let full = try fakeRun()
        let parts = try (1...3).map { k in ("s\(k)", try fakeRun(shard: Shard(index: k, count: 3))) }
        let (merged, notes) = try Merge.merge(parts)
        XCTAssertTrue(notes.isEmpty, "\(notes)")
        XCTAssertTrue(merged.complete)
        XCTAssertEqual(merged.cells.map(\.key), full.cells.map(\.key))
        XCTAssertEqual(merged.cells.map(\.derived), full.cells.map(\.derived), "same-run ratios survive sharding")
        // Overlapping inputs are refused; a missing shard makes the merge incomplete.
        XCTAssertThrowsError(try Merge.merge([parts[0], parts[0]]))
        let (partial, partialNotes) = try Merge.merge(Array(parts.prefix(2)))
        XCTAssertFalse(partial.complete)
        XCTAssertTrue(partialNotes.contains { $0.contains("missing") })
    }

    func testAtomicWriteLeavesNoTemporaryFiles() throws {
        let dir = tempDir()
        _ = try fakeRun(dir: dir)
        let names = try FileManagerLite.list(dir)
        XCTAssertEqual(names, ["results.json"])
    }

    func testFingerprintIgnoresHostnameButNotCPU() {
        var a = testEnvironment(); a.hostname = "other"
        XCTAssertEqual(EnvironmentInfo.fingerprint(a), testEnvironment().fingerprint)
        XCTAssertNotEqual(testEnvironment(fingerprintCPU: "Other CPU").fingerprint, testEnvironment().fingerprint)
        XCTAssertTrue(testEnvironment().fingerprint.hasPrefix("test-cpu-2c-"))
    }

    func testGitCommitIsReadFromCheckout() {
        // The test runs inside the package checkout (a worktree or a clone): HEAD resolves to 40 hex digits.
        if let c = GitInfo.headCommit() { XCTAssertEqual(c.count, 40) }
    }
}

import Glibc
enum FileManagerLite {
    static func list(_ dir: String) throws -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var out: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { out.append(name) }
        }
        return out.sorted()
    }
}

/// Speedups over a dense reference timed alternately with the cell (drift on a shared machine hits both alike).
final class PairedReferenceTests: XCTestCase {
    /// The real measurer pairs every non-dense cell with its group's dense model: as many reference samples as cell
    /// samples, and the speedup is the median of the per-repetition ratios; dense cells are not paired.
    func testGatedCellsArePairedWithTheirDenseReference() throws {
        var spec = SweepSpec(preset: "test", models: [.dense, .dropout, .dg], hidden: [[16]], batches: [4],
                             activeFractions: [0.5], granularities: [1], maskKinds: [.perSample], threads: [1],
                             inputFeatures: 8, classes: 3)
        spec.repetition = RepetitionPolicy(warmupCalls: 1, warmupSeconds: 0, minSampleSeconds: 1e-5, minReps: 5, maxReps: 7,
                                           budgetSeconds: 0.001, targetRelativeCI: 0)
        let measurer = KernelCellMeasurer(kernels: try KernelSet.select(.auto), measurePeak: false)
        let runner = SweepRunner(spec: spec, shard: nil, store: ResultsStore(directory: tempDir()), measurer: measurer,
                                 now: { "2025-01-01T00:00:00Z" })
        let results = try runner.run(environment: testEnvironment()).1
        XCTAssertNil(results.cell("dense h=16 b=4 t=1")?.referenceTiming)
        for key in ["dropout h=16 b=4 t=1", "dg h=16 b=4 t=1 r=0.5 g=1 mask=per-sample"] {
            let c = try XCTUnwrap(results.cell(key), key)
            let reference = try XCTUnwrap(c.referenceTiming, key)
            XCTAssertEqual(reference.samples.count, c.timing?.samples.count, key)
            let ratios = try XCTUnwrap(c.pairedSpeedups, key)
            XCTAssertEqual(c.derived?.speedup, Summary(ratios)?.median, key)
        }
    }

    /// With a paired reference the speedup comes from it, not from the group's dense cell (which may have been timed
    /// in another load regime), and compare's per-repetition speedups are the paired ratios; without one, the dense
    /// cell serves as before.
    func testPairedSpeedupOverridesTheDenseCell() throws {
        let cell = Cell(model: .dg, hidden: [16], batch: 4, threads: 1, activeFraction: 0.5, granularity: 1, maskKind: .perSample)
        let dense = CellResult(cell: Cell(model: .dense, hidden: [16], batch: 4, threads: 1), status: .ok, measuredAt: "",
                               masks: "synthetic", timing: timing(Array(repeating: 10, count: 9)),
                               cost: CostBreakdown(useful: KernelCost(macs: 100)), denseCost: KernelCost(macs: 100))
        let cellSamples: [Double] = [5, 5, 5, 5, 5, 5, 5, 5, 5], referenceSamples: [Double] = [20, 20, 20, 20, 20, 20, 20, 21, 19]
        var paired = CellResult(cell: cell, status: .ok, measuredAt: "", masks: "synthetic", timing: timing(cellSamples),
                                cost: CostBreakdown(useful: KernelCost(macs: 50)), denseCost: KernelCost(macs: 100),
                                referenceTiming: timing(referenceSamples))
        XCTAssertEqual(Derivation.derive(paired, dense: dense)?.speedup, 4)
        XCTAssertEqual(Compare.samples(.speedup, paired, dense), zip(referenceSamples, cellSamples).map { $0 / $1 })
        paired.referenceTiming = nil
        XCTAssertEqual(Derivation.derive(paired, dense: dense)?.speedup, 2)
        XCTAssertEqual(Compare.samples(.speedup, paired, dense), Array(repeating: 2, count: 9))
    }

    private func timing(_ samples: [Double]) -> CellTiming {
        CellTiming(samples: samples, innerCalls: 1, warmupCalls: 1, stopReason: .maxReps)
    }
}
