@testable import DGHarness
import DGModels
import Glibc
import XCTest

/// `--weights DIR`: the sweep enumerates exactly the trained models in DIR and matches each cell to its file.
final class TrainedWeightsTests: XCTestCase {
    func testScanApplyAndMatch() throws {
        let dir = "/tmp/dgperf-trained-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        mkdir(dir, 0o755)
        defer { for n in SlurmFiles.list(dir) { unlink(dir + "/" + n) }; rmdir(dir) }
        let small = [32]
        let dense = try Network(spec: ModelSpec(kind: .dense, inputFeatures: 20, hidden: small, classes: 3), seed: 1)
        let dg = try Network(spec: ModelSpec(kind: .dg, inputFeatures: 20, hidden: small, classes: 3, granularity: 4,
                                             gate: "lowrank:4"), seed: 2)
        try WeightFile.write(network: dense, training: TrainingConfig(), metrics: TrainingMetrics(testAccuracy: 0.81),
                             seed: 1, to: dir + "/dense.dgw")
        try WeightFile.write(network: dg, training: TrainingConfig(),
                             metrics: TrainingMetrics(testAccuracy: 0.79, meanActiveFraction: 0.3125), seed: 2, to: dir + "/dg.dgw")

        let trained = try TrainedWeights.scan(dir)
        XCTAssertEqual(trained.entries.count, 2)
        var spec = SweepPreset.quick.spec
        spec.inputFeatures = 20; spec.classes = 3
        trained.apply(to: &spec)
        XCTAssertEqual(spec.masks, "trained:\(dir)")
        XCTAssertEqual(Set(spec.models), [.dense, .dg])
        XCTAssertEqual(spec.hidden, [small])
        XCTAssertEqual(spec.activeFractions, [0.313])
        XCTAssertEqual(spec.granularities, [4])
        let cells = spec.expandCells()
        let gated = cells.filter { $0.model == .dg }
        XCTAssertEqual(gated.count, spec.batches.count * spec.threads.count)
        for c in cells { XCTAssertNotNil(trained.entry(for: c), "cell \(c.key) has a weight file") }
        XCTAssertEqual(trained.entry(for: gated[0])?.testAccuracy, 0.79)
    }

    func testRejectsEmptyAndForeignDirectories() {
        XCTAssertThrowsError(try TrainedWeights.scan("/nonexistent/weights")) { XCTAssert("\($0)".contains("is not a directory")) }
        let dir = "/tmp/dgperf-trained-empty-\(getpid())"
        mkdir(dir, 0o755)
        defer { for n in SlurmFiles.list(dir) { unlink(dir + "/" + n) }; rmdir(dir) }
        XCTAssertThrowsError(try TrainedWeights.scan(dir)) { XCTAssert("\($0)".contains("holds no .dgw")) }
        _ = try? AtomicFile.write("garbage", to: dir + "/x.dgw")
        XCTAssertThrowsError(try TrainedWeights.scan(dir)) { XCTAssert("\($0)".contains("not a dgperf weight file")) }
    }
}
