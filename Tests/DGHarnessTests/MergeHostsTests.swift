@testable import DGHarness
import DGReport
import XCTest

/// Shards measured on different machines keep their own environment block, and tables group by machine.
final class MergeHostsTests: XCTestCase {
    func testMergeKeepsEachHostsEnvironment() throws {
        var spec = SweepPreset.quick.spec
        spec.batches = [1, 32]; spec.models = [.dense]; spec.threads = [1]
        var envA = EnvironmentInfo.current(kernels: .avx2, dgperfVersion: "t")
        envA.cpuModel = "CPU A"; envA.fingerprint = "cpu-a-2c-00000001"
        var envB = envA
        envB.cpuModel = "CPU B"; envB.fingerprint = "cpu-b-16c-00000002"
        func shard(_ k: Int, _ env: EnvironmentInfo) -> RunResults {
            var r = RunResults(spec: spec, shard: Shard(index: k, count: 2), cellFilter: nil, environment: env, now: "t")
            r.cells = spec.selectCells(shard: Shard(index: k, count: 2)).map {
                CellResult(cell: $0, status: .skipped, reason: "test", measuredAt: "t", masks: spec.masks)
            }
            r.complete = true
            return r
        }
        let (merged, notes) = try Merge.merge([("a", shard(1, envA)), ("b", shard(2, envB))])
        XCTAssertEqual(merged.environments?.map(\.fingerprint).sorted(), ["cpu-a-2c-00000001", "cpu-b-16c-00000002"])
        XCTAssertEqual(Set(merged.cells.compactMap(\.fingerprint)), ["cpu-a-2c-00000001", "cpu-b-16c-00000002"])
        XCTAssertTrue(notes.contains { $0.contains("another machine") })
        // Round trip keeps them.
        let data = try JSONEncoder().encode(merged)
        let back = try JSONDecoder().decode(RunResults.self, from: data)
        XCTAssertEqual(back.environments?.count, 2)
        XCTAssertEqual(back.cells.map(\.fingerprint), merged.cells.map(\.fingerprint))
        // One machine: nothing extra.
        let (single, _) = try Merge.merge([("a", shard(1, envA)), ("b", shard(2, envA))])
        XCTAssertNil(single.environments)
        XCTAssertTrue(single.cells.allSatisfy { $0.fingerprint == nil })
    }
}
