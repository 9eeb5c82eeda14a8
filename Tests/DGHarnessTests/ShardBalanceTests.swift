@testable import DGHarness
import XCTest

/// `--shard K/N` deals whole shape groups, balanced by estimated measuring time (not by count).
final class ShardBalanceTests: XCTestCase {
    func testShardsCoverEveryCellOnceAndBalanceEstimatedTime() {
        for preset in [SweepPreset.quick, .default, .full] {
            let spec = preset.spec
            let all = spec.expandCells()
            for n in [2, 3, 5] {
                var seen: [String: Int] = [:]
                var load = [Double](repeating: 0, count: n)
                for k in 1...n {
                    for c in spec.selectCells(shard: Shard(index: k, count: n)) {
                        seen[c.key, default: 0] += 1
                        load[k - 1] += spec.estimatedSeconds(c)
                    }
                }
                XCTAssertEqual(seen.count, all.count, "\(preset) N=\(n): every cell in some shard")
                XCTAssertTrue(seen.values.allSatisfy { $0 == 1 }, "\(preset) N=\(n): no cell twice")
                let groups = Set(all.map(\.groupKey)).count
                if groups >= 4 * n {
                    XCTAssertLessThan(load.max()! / load.min()!, 1.35, "\(preset) N=\(n): estimated shard times \(load)")
                }
            }
            // Deterministic: the same assignment every time.
            XCTAssertEqual(spec.shardAssignment(count: 3), spec.shardAssignment(count: 3))
        }
    }
}
