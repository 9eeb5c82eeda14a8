import DGKernels
import DGModels
import DGReport
import DGRuntime
import FoundationEssentials
import Glibc
import XCTest
@testable import DGHarness

/// `dgperf profile`: phase work equals the kernels' accounting, phase times add up to the call,
/// the counters' fallback, the limits cache, and the report/roofline rendering.
final class ProfileTests: XCTestCase {
    static let limits = MachineLimits(
        fingerprint: "test", cpuModel: "cpu", kernel: "k", cores: 2, fmaPeakGflopsPerCore: 100, fmaPeakGflopsAllCores: 180,
        bandwidth: [BandwidthMeasurement(kernel: "triad", level: "DRAM", workingSetBytes: 1, threads: 1, gigabytesPerSecond: 20),
                    BandwidthMeasurement(kernel: "triad", level: "L2", workingSetBytes: 1, threads: 1, gigabytesPerSecond: 150)],
        measuredAt: "now", measurementSeconds: 0)

    func request(_ spec: ModelSpec, batch: Int, threads: Int = 1, reps: Int = 3) -> ProfileRequest {
        ProfileRequest(spec: spec, batch: batch, threads: threads, repetitions: reps, minimumSampleSeconds: 0, warmupSeconds: 0)
    }

    func measure(_ r: ProfileRequest, api: PerfEventAPI = .system) throws -> ProfileMeasurement {
        try ProfileRunner.measure(r, kernels: try KernelSet.select(.auto), counterAPI: api)
    }

    /// Per (layer, phase) work summed over every profiled call equals Σ ForwardReport.cost.total — for every
    /// model family and every GatedLayerExecutor strategy, 1 and 2 threads.
    func testPhaseWorkEqualsKernelAccounting() throws {
        let specs: [(ModelSpec, Int)] = [
            (ModelSpec(kind: .dense, hidden: [48, 40]), 17),
            (ModelSpec(kind: .dg, hidden: [64], activeFraction: 0.25, granularity: 1, maskKind: .perSample), 13),  // dense-then-mask
            (ModelSpec(kind: .dg, hidden: [64, 64], activeFraction: 0.5, granularity: 16, maskKind: .perSample, gate: "full"), 9),  // block-gather, dense-k
            (ModelSpec(kind: .dg, hidden: [64], activeFraction: 0.3, granularity: 4, maskKind: .shared), 11),  // shared-gather
            (ModelSpec(kind: .random, hidden: [32], activeFraction: 0.5, maskKind: .shared), 5),  // activation (scale)
            (ModelSpec(kind: .dg, hidden: [64], activeFraction: 0.5), 1),  // batch 1 (GEMV path: no packing)
            (ModelSpec(kind: .moe, hidden: [64], experts: 4, topK: 2), 23),
        ]
        for (spec, batch) in specs {
            for threads in [1, 2] {
                let m = try measure(request(spec, batch: batch, threads: threads))
                let what = "\(spec.kind) \(spec.hidden) G=\(spec.granularity) \(spec.maskKind) b=\(batch) t=\(threads)"
                XCTAssertEqual(m.recordedWork, m.reportedWork, what)
                XCTAssertGreaterThan(m.reportedWork.macs, 0, what)
                XCTAssertEqual(m.recorderMismatches, 0, what)
                // Per phase: gate = the predictor's (or MoE router's) MACs (from its shape); gate + pack + gemm (+ activation) = everything.
                let n = m.profiledCalls
                let gate = m.workByCell.filter { $0.key.phase == .gate }.values.reduce(KernelCost.zero, +)
                var predictor = 0
                if spec.kind == .dg {
                    let (g, gr) = try GatePredictor.parse(spec.gate, granularity: spec.granularity)
                    for l in spec.hidden.indices {
                        predictor += batch * g.macsPerSample(inputs: spec.dims[l], gates: (spec.hidden[l] + gr - 1) / gr)
                    }
                }
                if spec.kind == .moe { predictor = batch * spec.inputFeatures * spec.experts }  // the router
                XCTAssertEqual(gate.macs, predictor * n, what)
                XCTAssertLessThanOrEqual(gate.macs, m.forwardCost.overhead.macs * n, what)
                // Σ over calls, not first call × n: the model's per-sample masks rotate, and strategies that compute
                // exactly the active pairs execute a different number of MACs per mask.
                let all = m.workByCell.values.reduce(KernelCost.zero, +)
                XCTAssertEqual(all.macs, m.reportedWork.macs, what)
                if batch == 1 {  // hidden.0 takes the GEMV path (packs nothing); the output layer's K-gather packs
                    XCTAssertNil(m.workByCell.keys.first { $0.phase == .pack && $0.layer == 0 }, "GEMV path packs nothing: \(what)")
                }
                if spec.kind == .random { XCTAssertNotNil(m.workByCell.keys.first { $0.phase == .activation }, what) }
            }
        }
    }

    /// Per sample, the phases add up to the measured wall time of the calls (within 5%), and the
    /// report's Σ of medians is within 5% of the profiled median.
    func testPhaseTimesSumToTheTotal() throws {
        let spec = ModelSpec(kind: .dg, hidden: [256], activeFraction: 0.25, granularity: 16)
        let m = try measure(ProfileRequest(spec: spec, batch: 64, threads: 1, repetitions: 9, minimumSampleSeconds: 0.002, warmupSeconds: 0.02))
        XCTAssertEqual(m.samples.count, 9)
        XCTAssertEqual(m.unprofiledSeconds.count, 9, "profiled and unprofiled samples are interleaved one to one")
        for (s, wall) in zip(m.samples, m.profiledSeconds) {
            let sum = Double(s.reduce(UInt64(0)) { $0 + $1.nanoseconds }) * 1e-9
            XCTAssertEqual(sum / wall, 1, accuracy: 0.05)
        }
        let r = ProfileAnalysis.report(m, request: request(spec, batch: 64), limits: Self.limits,
                                       environment: EnvironmentInfo.current(kernels: try KernelSet.select(.auto), dgperfVersion: "t"))
        XCTAssertEqual(r.totals.phaseSumOverProfiled, 1, accuracy: 0.05)
        XCTAssertEqual(r.phases.reduce(0) { $0 + $1.share }, 1, accuracy: 1e-9)
        XCTAssertEqual(Set(r.phases.map(\.phase)).isSuperset(of: [.gate, .mask, .gemm]), true, "\(r.phases.map(\.phase))")
    }

    /// With a deterministic clock the whole measurement is reproducible, and the analysis divides correctly.
    func testDeterministicClockAndAnalysis() throws {
        final class Ticks: @unchecked Sendable { var t: UInt64 = 0 }
        let ticks = Ticks()
        let spec = ModelSpec(kind: .dense, hidden: [32])
        let kernels = try KernelSet.select(.auto)
        let engine = GemmEngine(kernels: kernels)
        let model = try ModelFactory.synthetic(spec, engine: engine)
        // Batch 1 takes the GEMV path: no packing, whose timer inside the engine is a real clock.
        let req = request(spec, batch: 1, reps: 4)
        let m = try ProfileRunner.measure(model: model, profiled: model as! PhaseProfiled, engine: engine, request: req,
                                          counters: PerfCounters(api: .failing(errno: ENOENT)),
                                          clock: { ticks.t += 1000; return ticks.t })
        // Each profiled call: begin other, begin gemm 0, end gemm 0, begin gemm 1, end gemm 1, end other → 5 µs.
        for s in m.samples { XCTAssertEqual(s.reduce(UInt64(0)) { $0 + $1.nanoseconds }, 5000) }
        let r = ProfileAnalysis.report(m, request: req, limits: Self.limits,
                                       environment: EnvironmentInfo.current(kernels: kernels, dgperfVersion: "t"))
        let gemm0: ProfilePhaseRow = try XCTUnwrap(r.phases.first { (p: ProfilePhaseRow) in p.layer == 0 && p.phase == Phase.gemm })
        XCTAssertNil(r.phases.first { $0.phase == .pack })
        XCTAssertEqual(gemm0.macs, 784 * 32)
        XCTAssertEqual(gemm0.bytesWritten, 4 * 32)
        XCTAssertEqual(gemm0.bytesRead, 4 * (784 + 784 * 32))
        let t = gemm0.medianSeconds
        XCTAssertEqual(t, 1e-6, accuracy: 1e-15, "one fake microsecond per gemm")
        XCTAssertEqual(gemm0.arithmeticIntensity!, 2.0 * 784 * 32 / Double(gemm0.bytes), accuracy: 1e-12)
        XCTAssertEqual(gemm0.bound, "memory")
        XCTAssertEqual(gemm0.gflops!, 2 * Double(gemm0.macs) / t / 1e9, accuracy: 1e-9)
        XCTAssertEqual(gemm0.fractionOfPeak!, gemm0.gflops! / 100, accuracy: 1e-12)
        XCTAssertEqual(r.peakGflops, 100)
        XCTAssertEqual(r.memoryGigabytesPerSecond, 20)
        XCTAssertEqual(r.interpretation.count, 2)
        XCTAssertTrue(r.interpretation[0].contains("no gate or mask work"), r.interpretation[0])
        XCTAssertTrue(r.interpretation[1].contains("GFLOP/s"), r.interpretation[1])
        XCTAssertEqual(r.counters.hardware.hasPrefix("unsupported ("), true)
        XCTAssertEqual(r.counters.softwareSource, "getrusage(RUSAGE_SELF)")
    }

    func testInterpretationNamesGateCostAndMemoryPhase() {
        func row(_ layer: Int, _ p: Phase, _ s: Double, macs: Int = 0, bytes: Int = 0) -> ProfilePhaseRow {
            ProfilePhaseRow(layer: layer, layerName: "l\(layer)", phase: p, calls: 1, medianSeconds: s, p05Seconds: s, p95Seconds: s,
                            share: s / 10, macs: macs, bytesRead: bytes, bytesWritten: 0, gflops: nil, gigabytesPerSecond: nil,
                            arithmeticIntensity: nil, fractionOfPeak: nil, fractionOfBandwidth: nil, bound: nil)
        }
        let rows = [row(0, .gate, 2, macs: 10), row(0, .mask, 1), row(0, .pack, 3, bytes: 45_000_000_000),
                    row(0, .gemm, 4, macs: 90_000_000_000)]
        let totals = ProfileTotals(profiledMedianSeconds: 10, unprofiledMedianSeconds: 10, unprofiledP05Seconds: 10, unprofiledP95Seconds: 10,
                                   overheadFraction: 0, phaseSumSeconds: 10, phaseSumOverProfiled: 1, macs: 90_000_000_010,
                                   bytes: 45_000_000_000, gflops: 18)
        let s = ProfileAnalysis.interpret(rows: rows, totals: totals, peak: 100, bandwidth: 20, threads: 1)
        XCTAssertEqual(s[0], "GEMM dominates with 40% of the time; the gate/router costs 20% of the time for 0.0% of the MACs and mask building 10%.")
        XCTAssertEqual(s[1], "The GEMM runs at 45.0 GFLOP/s, 45% of the 1-thread FMA peak (26% counting its packing); packing (incl. gathers) takes 30% of the time at 15.0 GB/s (75% of the measured DRAM bandwidth: memory-bound).")
    }

    func testCountersFallbackThroughTheProfile() throws {
        let m = try measure(request(ModelSpec(kind: .dg, hidden: [32], activeFraction: 0.5), batch: 4), api: .failing(errno: ENOENT))
        XCTAssertTrue(m.counters.hardware.hasPrefix("unsupported ("), m.counters.hardware)
        XCTAssertTrue(m.counters.readings.contains { $0.name == "cpu-time" })
        let text = ProfileTable.counters(m.counters, calls: 6)
        XCTAssertTrue(text.hasPrefix("hardware counters: unsupported ("), text)
        XCTAssertTrue(text.contains("software counters (getrusage(RUSAGE_SELF)"), text)
    }

    func testBadRequestsAreClearErrors() {
        let spec = ModelSpec(kind: .dg)
        XCTAssertThrowsError(try request(spec, batch: 0).validate()) { XCTAssertTrue("\($0)".contains("--batch")) }
        XCTAssertThrowsError(try request(spec, batch: 1, reps: 1).validate()) { XCTAssertTrue("\($0)".contains("--repetitions")) }
        XCTAssertThrowsError(try request(ModelSpec(kind: .dg, activeFraction: 1.5), batch: 1).validate()) {
            XCTAssertTrue("\($0)".contains("activeFraction"))
        }
        var r = request(spec, batch: 1)
        r.weightsPath = "/nonexistent/w.dgw"
        XCTAssertThrowsError(try measure(r)) { e in
            XCTAssertEqual((e as? HarnessError)?.kind, .noInput)
            XCTAssertTrue("\(e)".contains("dgperf train"))
        }
    }

    func testLimitsCacheRoundTripAndNeverFails() throws {
        let dir = "/tmp/dgperf-profile-test-\(getpid())"
        defer { _ = system("rm -rf '\(dir)'") }
        let env = ["XDG_CACHE_HOME": dir]
        XCTAssertEqual(MachineLimitsCache.directory(environment: env), dir + "/dgperf")
        XCTAssertEqual(MachineLimitsCache.directory(environment: ["HOME": "/h"]), "/h/.cache/dgperf")
        XCTAssertNil(MachineLimitsCache.directory(environment: [:]))
        XCTAssertNil(MachineLimitsCache.load(fingerprint: "test", environment: env))
        let (path, problem) = MachineLimitsCache.store(Self.limits, environment: env)
        XCTAssertNil(problem)
        XCTAssertEqual(path, dir + "/dgperf/limits-test.json")
        XCTAssertEqual(MachineLimitsCache.load(fingerprint: "test", environment: env), Self.limits)
        XCTAssertNil(MachineLimitsCache.load(fingerprint: "other", environment: env))
        // Damaged cache → nil (measure again), not an error.
        try AtomicFile.write("{not json", to: path!)
        XCTAssertNil(MachineLimitsCache.load(fingerprint: "test", environment: env))
        // Unwritable location → a reason, no throw.
        let bad = MachineLimitsCache.store(Self.limits, environment: ["XDG_CACHE_HOME": "/proc/dgperf-no"])
        XCTAssertNil(bad.path)
        XCTAssertNotNil(bad.problem)
        XCTAssertNil(MachineLimitsCache.store(Self.limits, environment: [:]).path)
    }

    /// A cached record is used while a per-core FMA probe agrees with it within 10 %; a host that got slower (or a
    /// cached run that was disturbed) is measured again.
    func testStaleLimitsAreMeasuredAgain() throws {
        XCTAssertNil(Self.limits.staleness(probedPeakPerCore: 100))
        XCTAssertNil(Self.limits.staleness(probedPeakPerCore: 91))
        XCTAssertNil(Self.limits.staleness(probedPeakPerCore: 109))
        let slower = try XCTUnwrap(Self.limits.staleness(probedPeakPerCore: 82))
        XCTAssertTrue(slower.contains("82 GFLOP/s") && slower.contains("cached 100") && slower.contains("-18 %"), slower)
        XCTAssertTrue(try XCTUnwrap(Self.limits.staleness(probedPeakPerCore: 125)).contains("+25 %"))

        let dir = "/tmp/dgperf-stale-test-\(getpid())"
        defer { _ = system("rm -rf '\(dir)'") }
        let env = ["XDG_CACHE_HOME": dir]
        let kernels = try KernelSet.select(.auto)
        var cached = Self.limits
        cached.fingerprint = EnvironmentInfo.current(kernels: kernels, dgperfVersion: "").fingerprint
        cached.measuredAt = "cached"
        XCTAssertNil(MachineLimitsCache.store(cached, environment: env).problem)
        var lines: [String] = []
        let kept = MachineLimitsCache.obtain(kernels: kernels, options: .quick, environment: env, probe: { _ in 104 },
                                             log: { lines.append($0) })
        XCTAssertEqual(kept, cached)
        XCTAssertTrue(lines.last?.contains("cached (") == true, "\(lines)")
        let fresh = MachineLimitsCache.obtain(kernels: kernels, options: .quick, environment: env, probe: { _ in 70 },
                                              log: { lines.append($0) })
        XCTAssertNotEqual(fresh.measuredAt, "cached")
        XCTAssertTrue(lines.contains { $0.contains("look stale") && $0.contains("-30 %") }, "\(lines)")
        XCTAssertEqual(MachineLimitsCache.load(fingerprint: cached.fingerprint, environment: env), fresh, "re-cached")
    }

    func testReportJSONRoundTripRooflineAndTable() throws {
        let spec = ModelSpec(kind: .dg, hidden: [64], activeFraction: 0.25, granularity: 16)
        let req = request(spec, batch: 32)
        let m = try measure(req)
        let r = ProfileAnalysis.report(m, request: req, limits: Self.limits,
                                       environment: EnvironmentInfo.current(kernels: try KernelSet.select(.auto), dgperfVersion: "t"))
        let path = "/tmp/dgperf-profile-\(getpid()).json"
        defer { unlink(path) }
        try AtomicFile.write(r.encoded(), to: path)
        let back = try ProfileReport.load(path)
        XCTAssertEqual(back.schema, "dgperf.profile/1")
        XCTAssertEqual(back.phases, r.phases)
        XCTAssertEqual(back.totals, r.totals)
        try AtomicFile.write("{\"schema\":\"dgperf.results/1\"}", to: path)
        XCTAssertThrowsError(try ProfileReport.load(path)) { XCTAssertTrue("\($0)".contains("dgperf.profile/1")) }
        XCTAssertThrowsError(try ProfileReport.load("/nonexistent.json")) { XCTAssertEqual(($0 as? HarnessError)?.kind, .noInput) }

        let svg = RooflinePlot.svg(r)
        XCTAssertTrue(svg.hasPrefix("<svg"))
        XCTAssertTrue(svg.hasSuffix("</svg>\n"))
        XCTAssertTrue(svg.contains("hidden.0 gemm"))
        XCTAssertTrue(svg.contains("roof 100 / 20.0") || svg.contains("roof 100.0 / 20.0"), "roof legend")
        XCTAssertTrue(svg.contains("not placeable (no FLOPs"))
        let text = ProfileTable.render(r)
        XCTAssertTrue(text.contains("profiler overhead:"))
        XCTAssertTrue(text.contains("hidden.0  gate"))
        XCTAssertTrue(text.contains("total"))
        XCTAssertEqual(back.activeFraction ?? 0, 0.25, accuracy: 1e-9, "the call's measured active fraction")
        XCTAssertTrue(text.contains("active 0.25"), text)
        // Trained weights: the gates decide r, so the header prints the measured one, not the spec's.
        var trained = r
        trained.weights = "w.dgw"; trained.activeFraction = 0.137
        XCTAssertTrue(ProfileTable.render(trained).contains("active learned 0.14"))
        // A file from before the field existed still loads.
        var json = r.encoded()
        json = json.replacingOccurrences(of: "\"activeFraction\"", with: "\"unknownKey\"")
        try AtomicFile.write(json, to: path)
        XCTAssertNil(try ProfileReport.load(path).activeFraction)
    }
}
