import Dispatch

/// Fork-join parallelism as the kernels see it.
///
/// `run(tasks:_:)` runs `body(t)` for every `t` in `0..<tasks` and returns when all have finished.
/// Precondition: `tasks <= workerCount`; task `t` then owns slot `t` exclusively for the call,
/// so kernels can index per-worker scratch buffers with it. Nested calls are not supported.
public protocol ParallelExecutor: AnyObject, Sendable {
    /// How many tasks may run at once.
    var workerCount: Int { get }
    func run(tasks: Int, _ body: (Int) -> Void)
}

extension ParallelExecutor {
    /// Static block split of `0..<count` over the workers; `body(range, slot)`.
    /// Ranges are contiguous and at least `grain` long (except possibly the last).
    public func parallelFor(_ count: Int, grain: Int = 1, _ body: (Range<Int>, Int) -> Void) {
        guard count > 0 else { return }
        let maxParts = max(1, (count + max(grain, 1) - 1) / max(grain, 1))
        let parts = min(workerCount, maxParts)
        if parts == 1 { body(0..<count, 0); return }
        run(tasks: parts) { t in
            let lo = count * t / parts, hi = count * (t + 1) / parts
            if lo < hi { body(lo..<hi, t) }
        }
    }
}

/// Runs everything on the calling thread. The reference executor for tests and batch-1 paths.
public final class SerialExecutor: ParallelExecutor {
    public init() {}
    public var workerCount: Int { 1 }
    public func run(tasks: Int, _ body: (Int) -> Void) {
        for t in 0..<tasks { body(t) }
    }
}

/// Unpinned `DispatchQueue.concurrentPerform`: the baseline that the pinned `WorkerPool` is compared with.
public final class ConcurrentPerformExecutor: ParallelExecutor {
    public let workerCount: Int
    public init(workers: Int) { workerCount = max(1, workers) }
    public func run(tasks: Int, _ body: (Int) -> Void) {
        precondition(tasks <= workerCount, "more tasks than workers")
        if tasks == 1 { body(0); return }
        withoutActuallyEscaping(body) { body in
            let box = UncheckedSendableBox(body)
            DispatchQueue.concurrentPerform(iterations: tasks) { t in box.value(t) }
        }
    }
}

/// Carries a non-Sendable value across a fork-join boundary whose join makes the access safe.
public struct UncheckedSendableBox<T>: @unchecked Sendable {
    public let value: T
    public init(_ value: T) { self.value = value }
}
