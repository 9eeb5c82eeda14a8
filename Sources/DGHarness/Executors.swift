import DGRuntime

/// What the pinned worker pool reports about a run (pinned threads, migrations seen, utilisation).
/// Optional in every result: the unpinned `ConcurrentPerformExecutor` has nothing to report.
public struct RuntimeStatistics: Codable, Sendable, Equatable {
    public var pinned: Bool
    public var migrations: Int
    public var utilization: Double?
    public init(pinned: Bool, migrations: Int, utilization: Double? = nil) {
        self.pinned = pinned; self.migrations = migrations; self.utilization = utilization
    }
}

/// The single place that decides which executor the sweep times with.
/// (The lead swaps in the pinned `WorkerPool` here; `statistics` then returns its counters.)
public enum ExecutorFactory {
    /// Recorded in results as the pinning policy.
    public static let pinningPolicy = "none (DispatchQueue.concurrentPerform, unpinned)"

    public static func make(threads: Int) -> ParallelExecutor {
        ConcurrentPerformExecutor(workers: threads)
    }

    /// Counters accumulated since the last call, if the executor keeps any.
    public static func statistics(_ executor: ParallelExecutor) -> RuntimeStatistics? {
        nil
    }
}
