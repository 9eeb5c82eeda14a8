import DGKernels
import DGModels
import Foundation
import Glibc
@testable import DGHarness

/// Deterministic fake timings: time = macs-proportional base × per-key factor, with small seeded noise.
class FakeMeasurer: CellMeasuring {
    var peakGflopsPerCore: Double? = 100
    var calls: [String] = []
    var slowdown: [String: Double] = [:]
    var noise = 0.01
    var killAfter: Int?
    var skipKinds: Set<ModelKind> = []
    struct Killed: Error {}

    func measure(_ cell: Cell, spec: SweepSpec) throws -> CellMeasurement {
        if let k = killAfter, calls.count >= k { throw Killed() }
        calls.append(cell.key)
        if skipKinds.contains(cell.model) { return .skipped("synthetic model '\(cell.model.rawValue)' is not implemented yet") }
        let dense = ([spec.inputFeatures] + cell.hidden + [spec.classes])
        var macs = 0
        for i in 0..<(dense.count - 1) { macs += cell.batch * dense[i] * dense[i + 1] }
        let useful = Cell.isGated(cell.model) ? Int(Double(macs) * cell.activeFraction) : macs
        let base = (1e-9 * Double(useful) / Double(cell.threads) + 2e-6) * (slowdown[cell.key] ?? 1)
        // Seeded per key (FNV-1a; hashValue is randomised per process) so runs are reproducible.
        var state: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in cell.key.utf8 { state = (state ^ UInt64(b)) &* 0x100_0000_01b3 }
        func next() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 53)
        }
        let samples = (0..<15).map { _ in base * (1 + noise * (next() - 0.5) * 2) }
        return .measured(timing: CellTiming(samples: samples, innerCalls: 1, warmupCalls: 3, stopReason: .budget),
                         cost: CostBreakdown(useful: KernelCost(macs: useful)), denseCost: KernelCost(macs: macs),
                         activeFraction: cell.activeFraction, notes: [:], runtime: nil)
    }
}

func tinySpec() -> SweepSpec {
    SweepSpec(preset: "test", models: [.dense, .dropout, .dg, .moe], hidden: [[16, 16], [32]], batches: [1, 4],
              activeFractions: [0.5, 0.25], granularities: [1, 4], maskKinds: [.perSample], threads: [1, 2],
              inputFeatures: 8, classes: 3)
}

func testEnvironment(fingerprintCPU: String = "Test CPU") -> EnvironmentInfo {
    EnvironmentInfo(hostname: "testhost", os: "Linux", cpuModel: fingerprintCPU, cpuVendor: "x", cpuFeatures: [], logicalCores: 2,
                    caches: .init(l1d: 32768, l2: 1 << 20, l3PerCore: 1 << 22), compiler: "Swift", buildConfiguration: "debug",
                    buildFlags: "-O", measuredCodeOptimized: true, gitCommit: nil, kernel: "fake", blocking: "", pinning: "none",
                    date: "2025-01-01T00:00:00Z", dgperfVersion: "test")
}

/// One root per test process for every `tempDir()`, removed when the process exits: the tests used to leave ~70
/// directories in /tmp per run (thousands on a long-lived CI machine).
private let testRoot: String = {
    let root = makeTempDirectory(template: "/tmp/dgperf-test-XXXXXX")
    atexit { try? FileManager.default.removeItem(atPath: testRoot) }
    return root
}()

private func makeTempDirectory(template: String) -> String {
    var chars = Array(template.utf8CString)
    let p = chars.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    precondition(p != nil, "cannot create a temporary directory from \(template)")
    return String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// A fresh empty temporary directory (inside this process's test root).
func tempDir(_ name: String = #function) -> String {
    makeTempDirectory(template: testRoot + "/XXXXXX")
}

/// Runs a full fake sweep and returns its results.
func fakeRun(spec: SweepSpec = tinySpec(), shard: Shard? = nil, measurer: FakeMeasurer = FakeMeasurer(),
             env: EnvironmentInfo = testEnvironment(), dir: String? = nil) throws -> RunResults {
    let store = ResultsStore(directory: dir ?? tempDir())
    let runner = SweepRunner(spec: spec, shard: shard, store: store, measurer: measurer, now: { "2025-01-01T00:00:00Z" })
    return try runner.run(environment: env).1
}
