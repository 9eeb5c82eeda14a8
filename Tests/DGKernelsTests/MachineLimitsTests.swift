import DGKernelsAVX2
import DGKernelsAVX512
import DGRuntime
import FoundationEssentials
import XCTest
@testable import DGKernels

final class MachineLimitsTests: XCTestCase {
    /// The bandwidth loops against scalar twins on sizes around the unroll (tails, 1, primes).
    func testStreamLoopsMatchScalar() {
        for isa in KernelSet.available().map(\.isa) {
            let loops = StreamLoops(isa: isa)
            for n in [1, 7, 63, 64, 65, 127, 257, 1000] {
                let arrays = StreamArrays(floats: max(n, 64))
                for i in 0..<n { arrays.b[i] = Float(i % 13) - 6; arrays.c[i] = Float(i % 7) * 0.25 }
                loops.triad(arrays.a, arrays.b, arrays.c, 3, n)
                for i in 0..<n { XCTAssertEqual(arrays.a[i], arrays.b[i] + 3 * arrays.c[i], "\(isa) triad n=\(n) i=\(i)") }
                loops.copy(arrays.a, arrays.c, n)
                for i in 0..<n { XCTAssertEqual(arrays.a[i], arrays.c[i], "\(isa) copy n=\(n)") }
                var s = 0.0
                for i in 0..<n { s += Double(arrays.b[i]) }
                XCTAssertEqual(Double(loops.sum(arrays.b, n)), s, accuracy: 1e-3, "\(isa) sum n=\(n)")
            }
        }
    }

    func testQuickProbeMeasuresEveryFigure() throws {
        let kernels = try KernelSet.select(.auto)
        let l = MachineLimitsProbe.measure(kernels: kernels, executor: SerialExecutor(), fingerprint: "test", cpuModel: "cpu",
                                           caches: CacheSizes(l1d: 48 << 10, l2: 1 << 20, l3PerCore: 16 << 20),
                                           measuredAt: "now", options: .quick)
        XCTAssertGreaterThan(l.fmaPeakGflopsPerCore, 0)
        XCTAssertGreaterThan(l.fmaPeakGflopsAllCores, 0)
        XCTAssertEqual(Set(l.bandwidth.map(\.level)), ["DRAM", "L1", "L2", "L3"])
        XCTAssertTrue(l.bandwidth.allSatisfy { $0.gigabytesPerSecond > 0 })
        XCTAssertEqual(l.cores, 1)
        let back = try JSONDecoder().decode(MachineLimits.self, from: JSONEncoder().encode(l))
        XCTAssertEqual(back, l)
        XCTAssertEqual(back.schema, MachineLimits.schema)
    }

    func testRoofSelection() {
        let l = MachineLimits(fingerprint: "f", cpuModel: "c", kernel: "k", cores: 4, fmaPeakGflopsPerCore: 100,
                              fmaPeakGflopsAllCores: 360, bandwidth: [
                                  .init(kernel: "triad", level: "DRAM", workingSetBytes: 1, threads: 1, gigabytesPerSecond: 20),
                                  .init(kernel: "triad", level: "DRAM", workingSetBytes: 1, threads: 4, gigabytesPerSecond: 50),
                                  .init(kernel: "copy", level: "DRAM", workingSetBytes: 1, threads: 1, gigabytesPerSecond: 18),
                                  .init(kernel: "triad", level: "L2", workingSetBytes: 1, threads: 1, gigabytesPerSecond: 200),
                              ], measuredAt: "", measurementSeconds: 0)
        XCTAssertEqual(l.peakGflops(threads: 1), 100)
        XCTAssertEqual(l.peakGflops(threads: 2), 200)
        XCTAssertEqual(l.peakGflops(threads: 4), 360, "all cores: the all-cores measurement")
        XCTAssertEqual(l.peakGflops(threads: 8), 360)
        var disturbed = l
        disturbed.fmaPeakGflopsAllCores = 150  // other load during the all-cores run: not a roof
        XCTAssertFalse(disturbed.allCoresMeasurementIsClean)
        XCTAssertEqual(disturbed.peakGflops(threads: 4), 400)
        XCTAssertEqual(disturbed.peakGflops(threads: 1), 100)
        XCTAssertEqual(l.memoryBandwidth(threads: 1), 20)
        XCTAssertEqual(l.memoryBandwidth(threads: 2), 20, "closest measured thread count not above")
        XCTAssertEqual(l.memoryBandwidth(threads: 4), 50)
        XCTAssertEqual(l.bandwidth("L2", threads: 4), 200)
        XCTAssertNil(l.bandwidth("L1", threads: 1))
    }

    /// The streaming floor reads at the bandwidth of the smallest measured level that holds the bytes, else DRAM.
    func testStreamingFloorPicksTheLevelThatHoldsTheBytes() throws {
        let l = MachineLimits(fingerprint: "f", cpuModel: "c", kernel: "k", cores: 2, fmaPeakGflopsPerCore: 100,
                              fmaPeakGflopsAllCores: 200, bandwidth: [
                                  .init(kernel: "triad", level: "L2", workingSetBytes: 500_000, threads: 1, gigabytesPerSecond: 200),
                                  .init(kernel: "triad", level: "L3", workingSetBytes: 16_000_000, threads: 1, gigabytesPerSecond: 100),
                                  .init(kernel: "copy", level: "DRAM", workingSetBytes: 1 << 28, threads: 1, gigabytesPerSecond: 40),
                                  .init(kernel: "copy", level: "DRAM", workingSetBytes: 1 << 28, threads: 2, gigabytesPerSecond: 50),
                              ], measuredAt: "", measurementSeconds: 0)
        let small = try XCTUnwrap(l.streamingFloor(bytes: 400_000, threads: 1))
        XCTAssertEqual(small.level, "L2"); XCTAssertEqual(small.seconds, 400_000 / 200e9, accuracy: 1e-15)
        XCTAssertEqual(l.streamingFloor(bytes: 6_400_000, threads: 1)?.level, "L3")
        let big = try XCTUnwrap(l.streamingFloor(bytes: 25_700_000, threads: 2))
        XCTAssertEqual(big.level, "DRAM"); XCTAssertEqual(big.gigabytesPerSecond, 50, "copy when no triad; 2-thread figure")
        XCTAssertEqual(big.seconds, 25_700_000 / 50e9, accuracy: 1e-12)
        let none = MachineLimits(fingerprint: "f", cpuModel: "c", kernel: "k", cores: 1, fmaPeakGflopsPerCore: 1,
                                 fmaPeakGflopsAllCores: 1, bandwidth: [], measuredAt: "", measurementSeconds: 0)
        XCTAssertNil(none.streamingFloor(bytes: 1, threads: 1))
    }
}
