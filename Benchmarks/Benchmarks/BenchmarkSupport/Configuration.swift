import Benchmark

/// The configuration every dgperf suite runs with. Static thresholds (Thresholds/<machine>/, written by `thresholds
/// update`) are checked with these tolerances: a change that slows the median by more than 35 % (p75: 50 %) fails the
/// check. Generous on purpose — these are absolute times on shared 2-core CI machines; same-run ratios (dgperf vs
/// numpy, gated vs dense) are judged by `dgperf compare` and `dgperf kernel` instead.
public func useDgperfBenchmarkConfiguration() {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock],
        timeUnits: .microseconds,
        warmupIterations: 5,
        maxDuration: .seconds(1),
        maxIterations: 1_000,
        thresholds: [.wallClock: .init(relative: [.p50: 35.0, .p75: 50.0])]
    )
}
