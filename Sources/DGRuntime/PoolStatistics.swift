/// What a `WorkerPool` observed since its last `resetStatistics()`: proof that pinning held (or did not),
/// and how evenly the parallel regions kept the workers busy. Codable, so every result can carry it.
public struct PoolStatistics: Sendable, Codable, Equatable {
    /// Every worker (and the calling thread as worker 0) is bound to its own PU.
    public var pinned: Bool
    public var policy: PinningPolicy
    public var workers: Int
    /// Bound PU (OS index) per worker; -1 where unpinned.
    public var cpus: [Int]
    /// Parallel regions (`run` calls) recorded.
    public var regions: Int
    /// Jobs (tasks) executed, summed over workers.
    public var jobs: Int
    /// CPU changes seen by `sched_getcpu()` before/after each job and between consecutive jobs of a worker.
    public var migrations: Int
    public var migrationsPerWorker: [Int]
    /// Jobs during which a pinned worker was seen on a PU other than its own (must stay 0 when pinned).
    public var offTargetJobs: Int
    /// The CPU each worker was last seen on (-1 = no job yet).
    public var lastObservedCPUs: [Int]
    /// Context switches of the worker threads (including the calling thread) since the reset.
    public var voluntaryContextSwitches: Int
    public var involuntaryContextSwitches: Int
    /// Where the context-switch counts come from.
    public var counterSource: String
    /// How migrations are detected.
    public var migrationSource: String
    /// Time each worker spent inside jobs.
    public var busySecondsPerWorker: [Double]
    /// Sum over regions of the fork→join wall time seen by the caller.
    public var regionWallSeconds: Double
    /// Σ busy / (Σ region wall × workers): the fraction of the pool's thread-time spent in jobs.
    public var utilization: Double
    /// Σ over regions of max worker busy / Σ of mean worker busy (mean over all workers, so idle workers
    /// count): 1.0 is perfect balance, `workers` means one worker did everything.
    public var imbalance: Double
    /// Warnings raised by the pool (binding failures, oversubscription).
    public var warnings: [String]

    /// True when any worker ran somewhere it should not have: a sweep cell with this set is flagged.
    public var workersMoved: Bool { offTargetJobs > 0 || (pinned && migrations > 0) }
}
