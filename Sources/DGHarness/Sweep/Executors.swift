import Glibc
import DGRuntime

/// What the pinned worker pool reports about a cell's timed region: proof that pinning held,
/// utilisation and load imbalance. A cell whose workers moved is flagged (`workersMoved`).
public struct RuntimeStatistics: Codable, Sendable, Equatable {
    public var pinned: Bool
    public var migrations: Int
    public var utilization: Double?
    public var imbalance: Double?
    public var workersMoved: Bool?
    public var cpus: [Int]?
    public var voluntaryContextSwitches: Int?
    public var involuntaryContextSwitches: Int?
    /// Where the context-switch counts come from (e.g. getrusage(RUSAGE_THREAD)).
    public var counterSource: String?
    public var warnings: [String]?

    public init(pinned: Bool, migrations: Int, utilization: Double? = nil) {
        self.pinned = pinned; self.migrations = migrations; self.utilization = utilization
    }

    public init(_ s: PoolStatistics) {
        pinned = s.pinned; migrations = s.migrations
        utilization = s.regions > 0 ? s.utilization : nil
        imbalance = s.regions > 0 ? s.imbalance : nil
        workersMoved = s.workersMoved; cpus = s.cpus
        voluntaryContextSwitches = s.voluntaryContextSwitches
        involuntaryContextSwitches = s.involuntaryContextSwitches
        counterSource = s.counterSource
        warnings = s.warnings.isEmpty ? nil : s.warnings
    }
}

/// The single place that decides which executor the sweep times with: the pinned `WorkerPool`
/// (compact policy; `DGPERF_PIN=scatter|none` overrides), whose counters go into every result.
public enum ExecutorFactory {
    public static let policy: PinningPolicy = {
        if let v = getenv("DGPERF_PIN").map({ String(cString: $0) }), let p = PinningPolicy(rawValue: v) { return p }
        return .compact
    }()

    /// Recorded in results as the pinning policy.
    public static var pinningPolicy: String { "\(policy.rawValue) (hwloc WorkerPool)" }

    public static func make(threads: Int) -> ParallelExecutor {
        WorkerPool(workers: threads, policy: policy)
    }

    /// Counters accumulated since the last call (and resets them), if the executor keeps any.
    public static func statistics(_ executor: ParallelExecutor) -> RuntimeStatistics? {
        guard let pool = executor as? WorkerPool else { return nil }
        let s = pool.statistics()
        pool.resetStatistics()
        return RuntimeStatistics(s)
    }
}
