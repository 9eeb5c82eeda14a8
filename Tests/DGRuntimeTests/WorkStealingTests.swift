import Glibc
import Synchronization
import XCTest
@testable import DGRuntime

/// `parallelForStealing`: every item exactly once on every executor, and a slow worker's items taken by the others.
final class WorkStealingTests: XCTestCase {
    func executors() -> [(String, ParallelExecutor)] {
        let pus = Topology.current.allowedCPUs.count
        return [("serial", SerialExecutor()), ("concurrentPerform×3", ConcurrentPerformExecutor(workers: 3)),
                ("pool×\(pus)", WorkerPool(workers: pus, policy: .compact)),
                ("pool×\(pus + 3) unpinned", WorkerPool(workers: pus + 3, policy: .compact))]
    }

    func testEveryItemRunsExactlyOnceOnItsSlotAlone() {
        for (name, executor) in executors() {
            for count in [0, 1, 2, 7, 64, 1000] {
                let hits = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: max(count, 1))
                for i in 0..<count { (hits + i).initialize(to: Atomic(0)) }
                let busy = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: executor.workerCount)
                for t in 0..<executor.workerCount { (busy + t).initialize(to: Atomic(0)) }
                let overlapped = Atomic<Bool>(false)
                executor.parallelForStealing(count) { item, slot in
                    // A slot runs one item at a time (kernels index per-slot scratch with it).
                    if busy[slot].wrappingAdd(1, ordering: .relaxed).oldValue != 0 { overlapped.store(true, ordering: .relaxed) }
                    hits[item].wrappingAdd(1, ordering: .relaxed)
                    busy[slot].wrappingSubtract(1, ordering: .relaxed)
                }
                for i in 0..<count { XCTAssertEqual(hits[i].load(ordering: .relaxed), 1, "\(name) count \(count) item \(i)") }
                XCTAssertFalse(overlapped.load(ordering: .relaxed), "\(name): two items at once on one slot")
                for i in 0..<count { _ = (hits + i).deinitialize(count: 1) }
                hits.deallocate()
                for t in 0..<executor.workerCount { _ = (busy + t).deinitialize(count: 1) }
                busy.deallocate()
            }
        }
    }

    /// Ranges of whole units: cover 0..<count once, each starts on a unit boundary, sizes differ by at most one unit.
    func testRangesOfWholeUnitsCoverEverythingEvenly() {
        for (name, executor) in executors() {
            for (count, unit) in [(0, 4), (1, 4), (7, 4), (256, 6), (257, 6), (1000, 1), (30, 64)] {
                let owner = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
                owner.initialize(repeating: 0, count: max(count, 1))
                defer { owner.deallocate() }
                let ranges = UnsafeMutablePointer<Range<Int>>.allocate(capacity: 64)
                let seen = Atomic<Int>(0)
                executor.parallelForStealing(count, unit: unit, blocksPerWorker: 4) { range, _ in
                    for i in range { owner[i] += 1 }
                    ranges[seen.wrappingAdd(1, ordering: .relaxed).oldValue] = range
                }
                let n = seen.load(ordering: .relaxed)
                XCTAssertTrue((0..<count).allSatisfy { owner[$0] == 1 }, "\(name) count \(count) unit \(unit)")
                let all = (0..<n).map { ranges[$0] }
                XCTAssertTrue(all.allSatisfy { $0.lowerBound % unit == 0 && !$0.isEmpty })
                let units = all.map { ($0.count + unit - 1) / unit }
                if let lo = units.min(), let hi = units.max() { XCTAssertLessThanOrEqual(hi - lo, 1, "\(name): \(all)") }
                ranges.deallocate()
            }
        }
    }

    /// Slot 0 is slowed down: the other workers must take items from its share (a static split would leave all
    /// of them to slot 0).
    func testOtherWorkersStealFromASlowWorker() {
        let executor = ConcurrentPerformExecutor(workers: 3)
        let count = 60
        let ranOn = UnsafeMutablePointer<Int>.allocate(capacity: count)
        ranOn.initialize(repeating: -1, count: count)
        defer { ranOn.deallocate() }
        executor.parallelForStealing(count) { item, slot in
            if slot == 0 { usleep(2_000) }
            ranOn[item] = slot
        }
        let ownShare = 0..<(count / 3)  // slot 0's contiguous share
        let stolen = ownShare.filter { ranOn[$0] != 0 }.count
        XCTAssertGreaterThan(stolen, 0, "no item of the slow worker's share was stolen: \(Array(UnsafeBufferPointer(start: ranOn, count: count)))")
        XCTAssertTrue((0..<count).allSatisfy { ranOn[$0] >= 0 })
    }
}
