import CHwloc
import FoundationEssentials
import Glibc
import XCTest
@testable import DGRuntime

/// The pinned pool on this machine (2 cores): binding verified with sched_getcpu, degradation paths,
/// fork-join coverage and statistics.
final class WorkerPoolTests: XCTestCase {
    var allowed: [Int] { Topology.current.allowedCPUs }

    /// Per-task results written to distinct slots (race-free), read after the join.
    final class Slots<T>: @unchecked Sendable {
        let p: UnsafeMutablePointer<T>
        let count: Int
        init(_ count: Int, _ value: T) { self.count = count; p = .allocate(capacity: count); p.initialize(repeating: value, count: count) }
        deinit { p.deinitialize(count: count); p.deallocate() }
        var array: [T] { Array(UnsafeBufferPointer(start: p, count: count)) }
    }

    func testEachWorkerRunsOnItsOwnPU() throws {
        for policy in [PinningPolicy.compact, .scatter] {
            let n = allowed.count
            let pool = WorkerPool(workers: n, policy: policy)
            XCTAssertTrue(pool.pinned, "\(policy): \(pool.warnings)")
            XCTAssertEqual(pool.cpus, policy.assignment(workers: n, topology: .current))
            let seen = Slots<Int32>(n * 200, -1)
            for round in 0..<200 {
                pool.run(tasks: n) { t in
                    // Spin a little so the job is long enough for the scheduler to move it if it could.
                    let t0 = monotonicNanos(); while monotonicNanos() &- t0 < 2_000 {}
                    seen.p[round * n + t] = dg_current_cpu()
                }
            }
            let cpus = seen.array
            for round in 0..<200 {
                for t in 0..<n { XCTAssertEqual(Int(cpus[round * n + t]), pool.cpus[t], "round \(round) task \(t)") }
            }
            let stats = pool.statistics()
            XCTAssertEqual(stats.migrations, 0)
            XCTAssertEqual(stats.offTargetJobs, 0)
            XCTAssertFalse(stats.workersMoved)
            XCTAssertEqual(stats.lastObservedCPUs, pool.cpus)
        }
    }

    func testMoreThreadsThanPUsRunsUnpinnedWithWarning() {
        let n = allowed.count + 1
        let pool = WorkerPool(workers: n, policy: .compact)
        XCTAssertFalse(pool.pinned)
        XCTAssertEqual(pool.cpus, Array(repeating: -1, count: n))
        XCTAssertTrue(pool.warnings.contains { $0.contains("\(n) workers requested") }, "\(pool.warnings)")
        assertCoversEveryIndexOnce(pool, count: 1000, grain: 1)
        let stats = pool.statistics()
        XCTAssertFalse(stats.pinned)
        XCTAssertFalse(stats.warnings.isEmpty)
    }

    func testBindingFailureOnAWorkerDegradesToUnpinned() {
        var options = WorkerPool.Options()
        options.simulateBindFailureOnSlot = allowed.count > 1 ? 1 : 0
        let pool = WorkerPool(workers: allowed.count, policy: .compact, options: options)
        XCTAssertFalse(pool.pinned)
        XCTAssertTrue(pool.warnings.contains { $0.contains("hwloc_set_cpubind failed") }, "\(pool.warnings)")
        assertCoversEveryIndexOnce(pool, count: 777, grain: 3)
        XCTAssertFalse(pool.statistics().pinned)
    }

    func testBindingFailureOnTheCallingThreadDegradesToUnpinned() {
        var options = WorkerPool.Options()
        options.simulateBindFailureOnSlot = 0
        let pool = WorkerPool(workers: allowed.count, policy: .scatter, options: options)
        XCTAssertFalse(pool.pinned)
        XCTAssertTrue(pool.warnings.contains { $0.contains("calling thread") }, "\(pool.warnings)")
        assertCoversEveryIndexOnce(pool, count: 100, grain: 1)
    }

    func testTopologyOfAnotherMachineNeverBindsOutsideTheAllowedCPUs() throws {
        // The 32-PU fixture's scatter order starts 0,16,…: PU 16 is not allowed here, so the pool must not bind.
        guard !allowed.contains(16) else { throw XCTSkip("this machine allows PU 16") }
        var options = WorkerPool.Options()
        options.topology = try TopologyTests.load("two-socket-numa-smt.xml")
        let pool = WorkerPool(workers: 2, policy: .scatter, options: options)
        XCTAssertFalse(pool.pinned)
        XCTAssertTrue(pool.warnings.contains { $0.contains("outside this process's allowed CPUs") }, "\(pool.warnings)")
    }

    func testUnpinnedPolicyDoesNotBindOrWarn() {
        let pool = WorkerPool(workers: 2, policy: .none)
        XCTAssertFalse(pool.pinned)
        XCTAssertTrue(pool.warnings.isEmpty)
        assertCoversEveryIndexOnce(pool, count: 50, grain: 1)
    }

    func testCallerBindingIsRestoredWhenThePoolGoes() throws {
        let live = try XCTUnwrap(HwlocTopology.live)
        let before = live.threadBinding()
        do {
            let pool = WorkerPool(workers: allowed.count, policy: .compact)
            pool.run(tasks: 1) { _ in }
            if pool.pinned { XCTAssertEqual(live.threadBinding(), [pool.cpus[0]]) }
        }
        XCTAssertEqual(live.threadBinding(), before)
    }

    func testParallelForCoversEveryIndexExactlyOnce() {
        let executors: [ParallelExecutor] = [
            SerialExecutor(), WorkerPool(workers: 1, policy: .compact), WorkerPool(workers: 2, policy: .compact),
            WorkerPool(workers: 3, policy: .none, options: .init(spinMicroseconds: 0)),
            ConcurrentPerformExecutor(workers: 2),
        ]
        for e in executors {
            for count in [0, 1, 2, 3, 7, 64, 1000, 1023] {
                for grain in [1, 3, 64, 5000] { assertCoversEveryIndexOnce(e, count: count, grain: grain) }
            }
        }
    }

    func testRunGivesEachTaskItsOwnSlotAndThread() {
        let pool = WorkerPool(workers: 3, policy: .none)
        for tasks in 1...3 {
            let hits = Slots<Int>(3, 0)
            let threads = Slots<pthread_t>(3, 0)
            pool.run(tasks: tasks) { t in hits.p[t] += 1; threads.p[t] = pthread_self() }
            XCTAssertEqual(hits.array, (0..<3).map { $0 < tasks ? 1 : 0 })
            XCTAssertEqual(threads.p[0], pthread_self(), "task 0 runs on the caller")
            XCTAssertEqual(Set(threads.array.prefix(tasks)).count, tasks, "one thread per task")
        }
        let touched = Slots<pthread_t>(3, 0)
        pool.onEachWorker { t in touched.p[t] = pthread_self() }
        XCTAssertEqual(Set(touched.array).count, 3)
    }

    func testStatisticsAreSane() throws {
        let pool = WorkerPool(workers: allowed.count, policy: .compact)
        let n = pool.workerCount
        for _ in 0..<5 { pool.run(tasks: n) { _ in } }
        pool.resetStatistics()
        let zero = pool.statistics()
        XCTAssertEqual(zero.regions, 0)
        XCTAssertEqual(zero.jobs, 0)
        for _ in 0..<100 {
            pool.run(tasks: n) { t in
                // Task 0 works twice as long: imbalance must show it.
                let t0 = monotonicNanos(); while monotonicNanos() &- t0 < (t == 0 ? 40_000 : 20_000) {}
            }
        }
        let s = pool.statistics()
        XCTAssertEqual(s.regions, 100)
        XCTAssertEqual(s.jobs, 100 * n)
        XCTAssertEqual(s.busySecondsPerWorker.count, n)
        XCTAssertGreaterThan(s.busySecondsPerWorker[0], 100 * 39e-6)
        XCTAssertLessThan(s.busySecondsPerWorker[0], 1.0)
        XCTAssertGreaterThan(s.utilization, 0.2)
        XCTAssertLessThanOrEqual(s.utilization, 1.01)
        if n > 1 {
            // max/mean = 40 / ((40 + 20·(n-1))/n) ≥ 1.3 for n = 2.
            XCTAssertGreaterThan(s.imbalance, 1.15)
            XCTAssertLessThanOrEqual(s.imbalance, Double(n) + 0.01)
        }
        XCTAssertGreaterThanOrEqual(s.voluntaryContextSwitches, 0)
        XCTAssertGreaterThanOrEqual(s.involuntaryContextSwitches, 0)
        XCTAssertEqual(s.counterSource, "getrusage(RUSAGE_THREAD) per worker thread")
        if s.pinned { XCTAssertEqual(s.offTargetJobs, 0) }
        let decoded = try JSONDecoder().decode(PoolStatistics.self, from: JSONEncoder().encode(s))
        XCTAssertEqual(decoded, s)
    }

    func testManyPoolsComeAndGo() {
        for i in 0..<20 {
            let pool = WorkerPool(workers: 1 + i % 3, policy: i % 2 == 0 ? .compact : .none)
            pool.run(tasks: pool.workerCount) { _ in }
        }
    }

    private func assertCoversEveryIndexOnce(_ e: ParallelExecutor, count: Int, grain: Int,
                                            file: StaticString = #filePath, line: UInt = #line) {
        let hits = Slots<Int>(max(count, 1), 0)
        let slotUse = Slots<Int>(e.workerCount, 0)
        e.parallelFor(count, grain: grain) { range, slot in
            slotUse.p[slot] += 1
            for i in range { hits.p[i] += 1 }
        }
        let h = hits.array.prefix(count)
        XCTAssertTrue(h.allSatisfy { $0 == 1 }, "count \(count) grain \(grain) on \(type(of: e))", file: file, line: line)
        XCTAssertTrue(slotUse.array.allSatisfy { $0 <= 1 }, "a slot ran twice in one call", file: file, line: line)
    }
}
