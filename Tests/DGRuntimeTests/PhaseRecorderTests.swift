import Glibc
import XCTest
@testable import DGRuntime

/// PhaseRecorder with a deterministic clock: exclusive times, the telescoping sum, work, pack transfer.
final class PhaseRecorderTests: XCTestCase {
    /// Advances by `step` ns on every read.
    final class FakeClock: @unchecked Sendable {
        var t: UInt64 = 0
        let step: UInt64
        init(step: UInt64) { self.step = step }
        func read() -> UInt64 { t += step; return t }
    }

    func entry(_ r: PhaseRecorder, _ layer: Int, _ phase: Phase) -> PhaseRecorder.Entry? {
        r.entries().first { $0.layer == layer && $0.phase == phase }
    }

    func testNestedPhasesAreExclusiveAndSumToTheOuterRegion() {
        let clock = FakeClock(step: 10)
        let r = PhaseRecorder(layers: 2, clock: clock.read)
        r.begin(.other, layer: -1)          // t=10
        r.begin(.mask, layer: 0)            // t=20: other +10
        r.begin(.gate, layer: 0)            // t=30: mask +10
        r.end(.gate, layer: 0, macs: 5, bytesRead: 6, bytesWritten: 7)  // t=40: gate +10
        r.end(.mask, layer: 0)              // t=50: mask +10
        r.begin(.gemm, layer: 1)            // t=60: other +10
        r.end(.gemm, layer: 1, macs: 100)   // t=70: gemm +10
        r.end(.other, layer: -1)            // t=80: other +10
        XCTAssertEqual(entry(r, -1, .other)?.nanoseconds, 30)
        XCTAssertEqual(entry(r, 0, .mask)?.nanoseconds, 20)
        XCTAssertEqual(entry(r, 0, .gate)?.nanoseconds, 10)
        XCTAssertEqual(entry(r, 1, .gemm)?.nanoseconds, 10)
        XCTAssertEqual(r.totalNanoseconds, 70, "phases sum to the outer region (80 − 10) exactly")
        XCTAssertEqual(entry(r, 0, .gate)?.macs, 5)
        XCTAssertEqual(entry(r, 0, .gate)?.bytesRead, 6)
        XCTAssertEqual(entry(r, 0, .gate)?.bytesWritten, 7)
        XCTAssertEqual(entry(r, 1, .gemm)?.macs, 100)
        XCTAssertEqual(entry(r, 0, .mask)?.calls, 1)
        XCTAssertEqual(r.mismatchedEnds, 0)
        XCTAssertEqual(r.entries().map(\.layer), [-1, 0, 0, 1], "model level first, then layers")
    }

    func testPackTimeAndBytesMoveOutOfGemm() {
        let clock = FakeClock(step: 100)
        var packed: UInt64 = 0
        let r = PhaseRecorder(layers: 1, clock: clock.read)
        r.packTicksSource = { packed }
        r.begin(.gemm, layer: 0)
        packed += 30  // the engine packed for 30 ns inside the call
        r.end(.gemm, layer: 0, macs: 8, bytesRead: 64, bytesWritten: 16)
        XCTAssertEqual(entry(r, 0, .gemm)?.nanoseconds, 70)
        XCTAssertEqual(entry(r, 0, .pack)?.nanoseconds, 30)
        XCTAssertEqual(entry(r, 0, .pack)?.bytesRead, 64, "packing reads the operands")
        XCTAssertEqual(entry(r, 0, .gemm)?.bytesRead, 0)
        XCTAssertEqual(entry(r, 0, .gemm)?.bytesWritten, 16)
        XCTAssertEqual(entry(r, 0, .gemm)?.macs, 8)
        XCTAssertEqual(r.totalNanoseconds, 100)
        // With the bytes the packing read known, only those move (the rest was read by kernels that do not pack).
        r.reset()
        var packedBytes: UInt64 = 1000
        r.packBytesSource = { packedBytes }
        r.begin(.gemm, layer: 0)
        packed += 30; packedBytes += 40
        r.end(.gemm, layer: 0, macs: 8, bytesRead: 64, bytesWritten: 16)
        XCTAssertEqual(entry(r, 0, .pack)?.bytesRead, 40)
        XCTAssertEqual(entry(r, 0, .gemm)?.bytesRead, 24)
        r.reset()
        r.begin(.gemm, layer: 0)
        packed += 30; packedBytes += 100  // A re-packed per column block: never more than the call read
        r.end(.gemm, layer: 0, macs: 8, bytesRead: 64, bytesWritten: 16)
        XCTAssertEqual(entry(r, 0, .pack)?.bytesRead, 64)
        XCTAssertEqual(entry(r, 0, .gemm)?.bytesRead, 0)
        r.packBytesSource = nil
        // No packing (e.g. the batch-1 GEMV path): bytes stay with gemm.
        r.reset()
        r.begin(.gemm, layer: 0)
        r.end(.gemm, layer: 0, macs: 1, bytesRead: 4, bytesWritten: 4)
        XCTAssertNil(entry(r, 0, .pack))
        XCTAssertEqual(entry(r, 0, .gemm)?.bytesRead, 4)
    }

    func testMismatchedAndStrayEndsAreCountedNotFatal() {
        let r = PhaseRecorder(layers: 1, clock: FakeClock(step: 1).read)
        r.end(.gemm, layer: 0)
        XCTAssertEqual(r.mismatchedEnds, 1)
        r.begin(.gate, layer: 0)
        r.end(.mask, layer: 0)
        XCTAssertEqual(r.mismatchedEnds, 2)
        r.reset()
        XCTAssertEqual(r.mismatchedEnds, 0)
        XCTAssertTrue(r.entries().isEmpty)
        // Out-of-range layers are charged to the model level instead of writing out of bounds.
        r.begin(.gemm, layer: 7); r.end(.gemm, layer: 7)
        r.begin(.gemm, layer: -5); r.end(.gemm, layer: -5)
        XCTAssertEqual(r.entries().map(\.layer), [-1])
        XCTAssertEqual(r.entries().first?.calls, 2)
    }

    func testMeasureWrapperAndRealClock() {
        let r = PhaseRecorder(layers: 1)
        let v = r.measure(.combine, layer: 0) { () -> Int in
            var s = 0
            for i in 0..<10_000 { s &+= i }
            return s
        }
        XCTAssertEqual(v, 49_995_000)
        XCTAssertEqual(entry(r, 0, .combine)?.calls, 1)
        XCTAssertGreaterThan(r.totalNanoseconds, 0)
    }

    func testDeepNestingBeyondTheStackStaysBalanced() {
        let r = PhaseRecorder(layers: 1, clock: FakeClock(step: 1).read)
        for _ in 0..<40 { r.begin(.gather, layer: 0) }
        for _ in 0..<40 { r.end(.gather, layer: 0) }
        XCTAssertEqual(r.mismatchedEnds, 0)
        XCTAssertEqual(r.totalNanoseconds, 79, "no time lost beyond the tracked depth")
        r.begin(.gemm, layer: 0); r.end(.gemm, layer: 0)
        XCTAssertEqual(entry(r, 0, .gemm)?.nanoseconds, 1)
    }
}

/// perf_event counters: the unsupported / refused paths through an injected API, and the real one.
final class PerfCountersTests: XCTestCase {
    func testNoPMUFallsBackToSoftwareAndSaysWhy() {
        // Hardware refused (ENOENT, as in this VM), software allowed: fake fds count up.
        final class Fake: @unchecked Sendable { var value: UInt64 = 0 }
        let fake = Fake()
        let api = PerfEventAPI(open: { type, _ in type == 0 ? -ENOENT : 10 },
                               read: { _ in fake.value += 1_000_000; return fake.value }, close: { _ in })
        let c = PerfCounters(api: api)
        XCTAssertNotNil(c.hardwareUnsupportedReason)
        XCTAssertTrue(c.hardwareDescription.hasPrefix("unsupported ("), c.hardwareDescription)
        XCTAssertTrue(c.hardwareDescription.contains("virtual machines"))
        XCTAssertEqual(c.softwareSource, "perf_event software events")
        c.start()
        let r = c.stop()
        XCTAssertEqual(r.readings.map(\.name), ["task-clock", "context-switches", "cpu-migrations"])
        XCTAssertTrue(r.hardware.hasPrefix("unsupported"))
    }

    func testEverythingRefusedUsesGetrusage() {
        let c = PerfCounters(api: .failing(errno: EACCES))
        XCTAssertTrue(c.hardwareDescription.contains("not permitted"), c.hardwareDescription)
        XCTAssertTrue(c.hardwareDescription.contains("perf_event_paranoid"))
        XCTAssertEqual(c.softwareSource, "getrusage(RUSAGE_SELF)")
        c.start()
        var x = 0.0
        for i in 0..<2_000_000 { x += Double(i).squareRoot() }
        let r = c.stop()
        XCTAssertGreaterThan(x, 0)
        XCTAssertEqual(r.readings.map(\.name), ["cpu-time", "context-switches"])
        XCTAssertGreaterThanOrEqual(r.readings[0].value, 0)
        XCTAssertTrue(PerfCounters(api: .failing(errno: ENOSYS)).hardwareDescription.contains("no perf events"))
    }

    func testHardwareCountersGiveIPC() {
        final class Fake: @unchecked Sendable { var reads: [Int32: UInt64] = [:] }
        let fake = Fake()
        // fd = 100 + config for hardware; cycles grow by 1000, instructions by 2500 per read.
        let api = PerfEventAPI(open: { type, config in type == 0 ? Int32(100 + config) : -ENOENT },
                               read: { fd in
                                   let inc: UInt64 = fd == 100 ? 1000 : fd == 101 ? 2500 : 7
                                   fake.reads[fd, default: 0] += inc
                                   return fake.reads[fd]
                               }, close: { _ in })
        let c = PerfCounters(api: api)
        XCTAssertNil(c.hardwareUnsupportedReason)
        XCTAssertEqual(c.hardwareDescription, "cycles, instructions, cache-misses")
        XCTAssertEqual(c.softwareSource, "getrusage(RUSAGE_SELF)")
        c.start()
        let r = c.stop()
        XCTAssertEqual(r.readings.first { $0.name == "instructions-per-cycle" }?.value, 2.5)
    }

    func testSystemCountersNeverFail() {
        let c = PerfCounters()
        c.start()
        let r = c.stop()
        XCTAssertFalse(r.readings.isEmpty, "some software counter always exists")
        XCTAssertFalse(r.hardware.isEmpty)
    }
}
