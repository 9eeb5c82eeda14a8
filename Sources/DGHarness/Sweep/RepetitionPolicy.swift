/// How many times a cell is run and for how long — the one place this policy is written down.
///
/// 1. Warm-up: call the forward pass at least `warmupCalls` times and for at least `warmupSeconds`
///    (pages touched, caches and clocks settled, lazily sized scratch allocated).
/// 2. Sample size: in warm-cache mode one sample times `innerCalls` back-to-back calls, chosen so a sample
///    lasts ≥ `minSampleSeconds` (timer resolution becomes irrelevant); the sample is the mean per call.
///    In cold mode (`--cold`) each sample is one call after flushing the caches.
///    A cell paired with its dense reference (every non-dense cell; see `CellResult.referenceTiming`) alternates one
///    sample of each, and those samples last ≥ `pairedMinSampleSeconds`: alternating 1 ms samples with the 784→2048→10
///    dense model timed gated cells 7–10 % (20–30 % without a warm-up call per switch) slower than back-to-back runs,
///    10 ms samples agreed with them.
/// 3. Repetitions: at least `minReps`; then stop as soon as the 95 % CI of the median (order statistics)
///    is within ±`targetRelativeCI` of the median, or the timed time exceeds `budgetSeconds`,
///    or `maxReps` is reached. The reason is recorded per cell (`stopReason`).
public struct RepetitionPolicy: Codable, Sendable, Equatable {
    public var warmupCalls: Int
    public var warmupSeconds: Double
    public var minSampleSeconds: Double
    public var minReps: Int
    public var maxReps: Int
    public var budgetSeconds: Double
    public var targetRelativeCI: Double

    public init(warmupCalls: Int = 3, warmupSeconds: Double = 0.05, minSampleSeconds: Double = 1e-3,
                minReps: Int = 10, maxReps: Int = 1000, budgetSeconds: Double = 0.5, targetRelativeCI: Double = 0.02) {
        self.warmupCalls = warmupCalls; self.warmupSeconds = warmupSeconds; self.minSampleSeconds = minSampleSeconds
        self.minReps = minReps; self.maxReps = maxReps; self.budgetSeconds = budgetSeconds
        self.targetRelativeCI = targetRelativeCI
    }

    public enum StopReason: String, Codable, Sendable {
        case targetCI = "target CI reached"
        case budget = "time budget spent"
        case maxReps = "max reps reached"
    }

    /// Whether to take another sample after `samples` (seconds per call) with `timedSeconds` spent timing.
    public func stopReason(samples: [Double], timedSeconds: Double) -> StopReason? {
        if samples.count >= maxReps { return .maxReps }
        guard samples.count >= minReps else { return nil }
        if let ci = MedianIntervalProxy.relativeHalfWidth(samples), ci <= targetRelativeCI { return .targetCI }
        if timedSeconds >= budgetSeconds { return .budget }
        return nil
    }

    /// Shortest sample of a cell paired with its dense reference (see the type's note).
    public static let pairedMinSampleSeconds = 0.01

    /// The shortest sample: `minSampleSeconds`, at least `pairedMinSampleSeconds` for a paired cell.
    public func minimumSampleSeconds(paired: Bool) -> Double {
        paired ? max(minSampleSeconds, Self.pairedMinSampleSeconds) : minSampleSeconds
    }

    /// Calls per sample so that one sample lasts ≥ `minimumSampleSeconds(paired:)`, given one call's duration.
    public func innerCalls(singleCallSeconds: Double, cold: Bool, paired: Bool = false) -> Int {
        if cold { return 1 }
        let n = (minimumSampleSeconds(paired: paired) / max(singleCallSeconds, 1e-9)).rounded(.up)
        return Int(min(max(n, 1), 1e6))
    }
}

import DGStats
enum MedianIntervalProxy {
    static func relativeHalfWidth(_ samples: [Double]) -> Double? {
        guard let ci = MedianInterval(samples), let s = Summary(samples) else { return nil }
        return ci.relativeHalfWidth(around: s.median)
    }
}
