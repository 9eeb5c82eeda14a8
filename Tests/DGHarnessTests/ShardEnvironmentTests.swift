import DGRuntime
import XCTest
@testable import DGHarness

final class ShardEnvironmentTests: XCTestCase {
    private func resolve(_ env: [String: String]) throws -> ShardAssignment { try ShardEnvironment.resolve(env) }

    private func assertError(_ env: [String: String], mentions: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try resolve(env), file: file, line: line) { error in
            let message = (error as? ShardEnvironmentError)?.message ?? "\(error)"
            XCTAssertTrue(message.contains(mentions), "'\(message)' should mention '\(mentions)'", file: file, line: line)
        }
    }

    func testSlurmArrayFromZero() throws {
        let a = try resolve(["SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "3", "SLURM_ARRAY_TASK_COUNT": "4"])
        XCTAssertEqual(a.description, "1/4")
        XCTAssertTrue(a.source.contains("SLURM_ARRAY_TASK_ID"))
        let last = try resolve(["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"])
        XCTAssertEqual(last.description, "4/4")
    }

    func testSlurmArrayFromOneIsOffsetByMin() throws {
        let a = try resolve(["SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_MAX": "6", "SLURM_ARRAY_TASK_COUNT": "2"])
        XCTAssertEqual(a.description, "1/2")
    }

    func testExplicitCountWinsSoPartialResubmitKeepsItsShard() throws {
        // `sbatch --array=3` of a 4-shard job: Slurm says MIN=3, COUNT=1; the shard is still 4/4.
        let a = try resolve(["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_COUNT": "1", "DGPERF_SHARD_COUNT": "4"])
        XCTAssertEqual(a.description, "4/4")
        assertError(["SLURM_ARRAY_TASK_ID": "4", "DGPERF_SHARD_COUNT": "4"], mentions: "outside 0…3")
    }

    func testNonContiguousArrayIsRejected() {
        assertError(["SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "4", "SLURM_ARRAY_TASK_COUNT": "3",
                     "SLURM_ARRAY_TASK_STEP": "2"], mentions: "not contiguous")
        assertError(["SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "5", "SLURM_ARRAY_TASK_COUNT": "2"],
                    mentions: "DGPERF_SHARD_COUNT")
    }

    func testIndexedJob() throws {
        let a = try resolve(["JOB_COMPLETION_INDEX": "2", "DGPERF_SHARD_COUNT": "3"])
        XCTAssertEqual(a.description, "3/3")
        XCTAssertTrue(a.source.contains("JOB_COMPLETION_INDEX"))
        assertError(["JOB_COMPLETION_INDEX": "2"], mentions: "DGPERF_SHARD_COUNT")
        assertError(["JOB_COMPLETION_INDEX": "3", "DGPERF_SHARD_COUNT": "3"], mentions: "outside")
    }

    func testSlurmTakesPrecedenceOverIndexedJob() throws {
        let a = try resolve(["SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "2", "JOB_COMPLETION_INDEX": "0"])
        XCTAssertEqual(a.description, "2/2")
    }

    func testBadValuesAndEmptyEnvironment() {
        assertError([:], mentions: "no scheduler index")
        assertError(["SLURM_ARRAY_TASK_ID": "x"], mentions: "SLURM_ARRAY_TASK_ID='x'")
        assertError(["SLURM_ARRAY_TASK_ID": "-1", "DGPERF_SHARD_COUNT": "2"], mentions: "SLURM_ARRAY_TASK_ID")
        assertError(["SLURM_ARRAY_TASK_ID": "0", "DGPERF_SHARD_COUNT": "0"], mentions: "DGPERF_SHARD_COUNT='0'")
        assertError(["SLURM_ARRAY_TASK_ID": "0"], mentions: "SLURM_ARRAY_TASK_MIN")
    }

    // MARK: balancedShards

    private func checkPartition(_ shards: [[Int]], items: Int, count: Int, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(shards.count, count, file: file, line: line)
        XCTAssertEqual(shards.flatMap { $0 }.sorted(), Array(0..<items), "every item exactly once", file: file, line: line)
        for s in shards { XCTAssertEqual(s, s.sorted(), file: file, line: line) }
    }

    func testBalancedShardsCoversEveryCellOnceAndIsDeterministic() {
        var rng = SplitMix64(seed: 7)
        for items in [0, 1, 2, 3, 7, 31, 100] {
            for count in [1, 2, 3, 5, 8, 101] {
                let costs = (0..<items).map { _ in rng.nextDouble() * 1e9 }
                let a = balancedShards(cellCosts: costs, count: count)
                checkPartition(a, items: items, count: count)
                XCTAssertEqual(a, balancedShards(cellCosts: costs, count: count))
            }
        }
    }

    func testBalancedShardsBalancesCostNotCount() {
        // One huge cell and many small ones: the huge one gets a shard to itself.
        let costs = [100.0] + [Double](repeating: 10, count: 10)
        let shards = balancedShards(cellCosts: costs, count: 2)
        XCTAssertEqual(shards[0], [0])
        XCTAssertEqual(shards[1], Array(1...10))
        // Round-robin by count would give 60 vs 50; LPT is within 4/3 of the optimum on random inputs.
        var rng = SplitMix64(seed: 3)
        for _ in 0..<20 {
            let c = (0..<40).map { _ in rng.nextDouble() * 100 }
            let k = 4
            let loads = balancedShards(cellCosts: c, count: k).map { $0.reduce(0) { $0 + c[$1] } }
            let lowerBound = max(c.reduce(0, +) / Double(k), c.max()!)
            XCTAssertLessThanOrEqual(loads.max()!, lowerBound * (4.0 / 3.0) + 1e-9)
        }
    }

    func testBalancedShardsTiesAndBadCosts() {
        // Equal costs deal like round-robin in index order.
        XCTAssertEqual(balancedShards(cellCosts: [1, 1, 1, 1], count: 2), [[0, 2], [1, 3]])
        // NaN, negative and infinite costs count as 0 and still land somewhere, spread by count.
        let shards = balancedShards(cellCosts: [.nan, -5, .infinity, 0], count: 2)
        checkPartition(shards, items: 4, count: 2)
        XCTAssertEqual(shards.map(\.count), [2, 2])
        // More shards than cells: the extra shards are empty.
        XCTAssertEqual(balancedShards(cellCosts: [3, 1], count: 3), [[0], [1], []])
    }
}
