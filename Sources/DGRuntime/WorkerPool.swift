import CHwloc
import Dispatch
import Glibc
import Synchronization

/// A fork-join pool of `workerCount` workers pinned to PUs chosen by a `PinningPolicy`.
///
/// Worker 0 is the thread that calls `run` (it is bound to the first PU on its first call and its previous
/// binding is restored when the pool is deinitialised on that thread). Workers 1… are threads owned by
/// their own serial `DispatchQueue` ("dgperf.worker.N"): each queue runs one long-lived loop that binds
/// its thread with `hwloc_set_cpubind(HWLOC_CPUBIND_THREAD)` and then waits for jobs.
///
/// Fork-join: the caller publishes a job by bumping one atomic word (epoch and task count), runs task 0
/// itself and waits for the others. Idle workers and the waiting caller spin for `spinMicroseconds`
/// (PAUSE) before they block on a condition variable, so back-to-back regions cost no system call.
///
/// Verification: every job records `sched_getcpu()` before and after, and its busy time; see
/// `statistics()`. Degradation: when binding fails or there are more workers than allowed PUs, the pool
/// runs unpinned, warns once on stderr and reports `pinned == false`; it never traps on those paths.
///
/// Calls to `run` must not overlap (the `ParallelExecutor` contract) and must not nest.
public final class WorkerPool: ParallelExecutor, @unchecked Sendable {
    public struct Options: Sendable {
        /// How long idle workers and the waiting caller poll before blocking. 0 = block at once.
        /// Ignored (treated as 0) when the pool has more workers than allowed PUs.
        public var spinMicroseconds: Int
        /// Topology to place workers on; nil = `Topology.current`. Must describe this machine to bind.
        public var topology: Topology?
        /// Test hook: pretend `hwloc_set_cpubind` fails for this worker slot.
        var simulateBindFailureOnSlot: Int?

        public init(spinMicroseconds: Int = 100, topology: Topology? = nil) {
            self.spinMicroseconds = spinMicroseconds
            self.topology = topology
        }
    }

    public let workerCount: Int
    public let policy: PinningPolicy
    /// Whether every worker is bound to its own PU right now.
    public var pinned: Bool { core.pinned.load(ordering: .relaxed) }
    /// The PU (OS index) of each worker, or -1 for every worker when unpinned.
    public var cpus: [Int] { pinned ? core.plannedCPUs : Array(repeating: -1, count: workerCount) }
    /// Warnings raised so far (also printed once per process on stderr).
    public var warnings: [String] { core.warnings.withLock { $0 } }

    private let core: PoolCore
    private let exited = DispatchGroup()
    // Caller-side state: only touched by the thread inside `run`/`statistics` (calls never overlap).
    private var callerThread: pthread_t = 0
    private var callerOriginalBinding: [Int]?
    private var regions = 0
    private var sumMaxBusyTicks: UInt64 = 0
    private var sumWallTicks: UInt64 = 0
    private var contextBaseline: [(voluntary: Int, involuntary: Int)]
    private var contextAvailable = true

    public convenience init(workers: Int, policy: PinningPolicy = .compact) {
        self.init(workers: workers, policy: policy, options: Options())
    }

    public init(workers: Int, policy: PinningPolicy, options: Options) {
        let n = max(1, workers)
        workerCount = n
        _ = CycleClock.secondsPerTick // calibrate now, not inside a measured region
        self.policy = policy
        let topology = options.topology ?? Topology.current
        var problems: [String] = []
        var plan = policy.assignment(workers: n, topology: topology)
        let allowed = topology.allowedCPUs.count
        if policy != .none && plan == nil {
            problems.append("\(n) workers requested but only \(allowed) PUs are allowed for this process; running unpinned (use --threads ≤ \(allowed) to pin)")
        }
        if let p = plan {
            let liveAllowed = Set(Topology.current.allowedCPUs)
            if HwlocTopology.live == nil {
                problems.append("hwloc cannot load this machine's topology; running unpinned")
                plan = nil
            } else if let outside = p.first(where: { !liveAllowed.contains($0) }) {
                // Never bind outside the allowed cpuset (cgroup / Slurm allocation / taskset).
                problems.append("PU \(outside) is outside this process's allowed CPUs \(liveAllowed.sorted()); running unpinned")
                plan = nil
            }
        }
        let oversubscribed = n > max(1, topology.allowedCPUs.count)
        core = PoolCore(workers: n, plannedCPUs: plan,
                        spinNanos: oversubscribed ? 0 : UInt64(max(0, options.spinMicroseconds)) * 1000,
                        simulateBindFailureOnSlot: options.simulateBindFailureOnSlot)
        contextBaseline = Array(repeating: (0, 0), count: n)

        // Start workers 1… on their own serial queues and wait until each has tried to bind.
        let started = DispatchSemaphore(value: 0)
        for slot in 1..<max(n, 1) {
            let queue = DispatchQueue(label: "dgperf.worker.\(slot)", qos: .userInitiated)
            exited.enter()
            queue.async { [core, exited] in
                core.workerMain(slot: slot, started: started)
                exited.leave()
            }
        }
        for _ in 1..<max(n, 1) { started.wait() }

        for p in problems { warn(p) }
        if plan != nil {
            let failed = (1..<n).filter { !core.slot($0).pointee.bindSucceeded }
            if !failed.isEmpty {
                degrade("hwloc_set_cpubind failed for worker(s) \(failed) (container or cpuset restriction?); running unpinned")
            }
        }
        resetStatistics()
    }

    deinit {
        core.shutdown()
        exited.wait()
        if callerThread == pthread_self(), let original = callerOriginalBinding {
            _ = HwlocTopology.live?.bindThread(to: original)
        }
        core.release()
    }

    // MARK: fork-join

    public func run(tasks: Int, _ body: (Int) -> Void) {
        run(tasks: tasks, record: true, body)
    }

    private func run(tasks: Int, record: Bool, _ body: (Int) -> Void) {
        precondition(tasks <= workerCount, "more tasks (\(tasks)) than workers (\(workerCount))")
        guard tasks > 0 else { return }
        prepareCaller()
        let t0 = CycleClock.now()
        withoutActuallyEscaping(body) { escapable in
            withUnsafePointer(to: escapable) { p in
                core.dispatch(tasks: tasks, body: UnsafeRawPointer(p), record: record)
            }
        }
        guard record else { return }
        regions += 1
        sumWallTicks &+= CycleClock.now() &- t0
        sumMaxBusyTicks &+= core.regionMaxBusy(tasks: tasks)
    }

    /// Runs `body(slot)` once on every worker's own thread (slot 0 = the caller). Use it to first-touch
    /// per-worker memory so its pages land on the worker's NUMA node.
    public func onEachWorker(_ body: (Int) -> Void) {
        run(tasks: workerCount, record: false, body)
    }

    /// Binds a new calling thread as worker 0 (once per thread).
    private func prepareCaller() {
        let me = pthread_self()
        if callerThread == me { return }
        callerThread = me
        guard pinned, let live = HwlocTopology.live else { return }
        callerOriginalBinding = live.threadBinding()
        let ok = core.simulateBindFailureOnSlot != 0 && live.bindThread(to: [core.plannedCPUs[0]])
        core.slot(0).pointee.target = ok ? core.plannedCPUs[0] : -1
        if !ok {
            degrade("hwloc_set_cpubind failed for the calling thread (worker 0); running unpinned")
        }
    }

    /// Unbinds every worker (each restores itself to the allowed CPUs) and records the warning.
    private func degrade(_ reason: String) {
        warn(reason)
        core.pinned.store(false, ordering: .relaxed)
        run(tasks: workerCount, record: false) { [core] t in core.unbindCurrentThread(slot: t) }
    }

    private func warn(_ message: String) {
        core.warnings.withLock { $0.append(message) }
        RuntimeWarnings.warnOnce(key: message, message)
    }

    // MARK: statistics

    /// Zeroes all counters; context-switch counts restart from here.
    public func resetStatistics() {
        for t in 0..<workerCount { core.slot(t).pointee.resetCounters() }
        regions = 0; sumMaxBusyTicks = 0; sumWallTicks = 0
        sampleContextSwitches()
        for t in 0..<workerCount {
            contextBaseline[t] = (core.slot(t).pointee.voluntarySwitches, core.slot(t).pointee.involuntarySwitches)
        }
    }

    /// Counters since the last reset (reading them wakes every worker once, outside any recorded region).
    public func statistics() -> PoolStatistics {
        sampleContextSwitches()
        var voluntary = 0, involuntary = 0, jobs = 0, migrations = 0, offTarget = 0
        var sumBusyTicks: UInt64 = 0
        var perWorkerMigrations: [Int] = [], busy: [Double] = [], last: [Int] = []
        for t in 0..<workerCount {
            let s = core.slot(t).pointee
            voluntary += s.voluntarySwitches - contextBaseline[t].voluntary
            involuntary += s.involuntarySwitches - contextBaseline[t].involuntary
            jobs += s.jobs; migrations += s.migrations; offTarget += s.offTargetJobs
            perWorkerMigrations.append(s.migrations)
            busy.append(Double(s.busyTicks) * CycleClock.secondsPerTick)
            sumBusyTicks &+= s.busyTicks
            last.append(s.lastCPU)
        }
        let meanBusy = Double(sumBusyTicks) / Double(workerCount)
        return PoolStatistics(
            pinned: pinned, policy: policy, workers: workerCount, cpus: cpus, regions: regions, jobs: jobs,
            migrations: migrations, migrationsPerWorker: perWorkerMigrations, offTargetJobs: offTarget,
            lastObservedCPUs: last,
            voluntaryContextSwitches: contextAvailable ? voluntary : -1,
            involuntaryContextSwitches: contextAvailable ? involuntary : -1,
            counterSource: contextAvailable ? "getrusage(RUSAGE_THREAD) per worker thread" : "unavailable",
            migrationSource: "sched_getcpu() before and after every job",
            busySecondsPerWorker: busy, regionWallSeconds: Double(sumWallTicks) * CycleClock.secondsPerTick,
            utilization: sumWallTicks > 0 ? Double(sumBusyTicks) / (Double(sumWallTicks) * Double(workerCount)) : 0,
            imbalance: sumBusyTicks > 0 ? Double(sumMaxBusyTicks) / meanBusy : 1,
            warnings: warnings)
    }

    private func sampleContextSwitches() {
        let ok = Atomic<Bool>(true)
        run(tasks: workerCount, record: false) { [core] t in
            var v = 0, i = 0
            if dg_thread_context_switches(&v, &i) == 0 {
                core.slot(t).pointee.voluntarySwitches = v
                core.slot(t).pointee.involuntarySwitches = i
            } else {
                ok.store(false, ordering: .relaxed)
            }
        }
        contextAvailable = ok.load(ordering: .relaxed)
    }
}

/// Per-worker counters, one cache line pair per worker (no false sharing). Written only by its worker
/// during a job; read/reset by the caller between jobs (ordered by the fork-join atomics).
struct WorkerSlot {
    var target = -1
    var bindSucceeded = true
    var jobs = 0
    var migrations = 0
    var offTargetJobs = 0
    var lastCPU = -1
    /// CycleClock ticks spent inside jobs.
    var busyTicks: UInt64 = 0
    var regionBusyTicks: UInt64 = 0
    var voluntarySwitches = 0
    var involuntarySwitches = 0

    mutating func resetCounters() {
        jobs = 0; migrations = 0; offTargetJobs = 0; lastCPU = -1; busyTicks = 0; regionBusyTicks = 0
    }
}

/// Calls the job through a non-inlined frame, so any retain/release of the closure context finishes
/// before the worker signals completion.
@inline(never)
private func invokeJob(_ body: UnsafeRawPointer, _ slot: Int) {
    body.assumingMemoryBound(to: ((Int) -> Void).self).pointee(slot)
}

/// The state shared by the caller and the worker threads. Outlives the `WorkerPool` until every worker
/// has left its loop.
final class PoolCore: @unchecked Sendable {
    // Measured on the 2-core VM: every extra store the caller makes into the line the workers spin on
    // costs a cache-line bounce (~200 ns there), so the job itself lives in a separate line (`job`) and
    // the caller's task keeps its busy time local.
    /// Epoch << 16 | task count of the current job; task count 0xFFFF = shut down.
    let generation = Atomic<UInt64>(0)
    /// Per worker, the epoch of the last job it finished, each on its own cache lines (`finished(t)`). With one shared
    /// countdown instead, the 15 workers of a 16-thread join queued for the same line (5.3–5.7 µs per empty round
    /// trip on a 16-vCPU Xeon).
    private let finishedFlags: UnsafeMutableRawPointer
    let sleepers = Atomic<Int>(0)
    let callerWaiting = Atomic<Bool>(false)
    let pinned: Atomic<Bool>
    let warnings = Mutex<[String]>([])

    let workers: Int
    let plannedCPUs: [Int]
    let spinNanos: UInt64
    let simulateBindFailureOnSlot: Int?
    private let slots: UnsafeMutableRawPointer
    private let slotStride: Int
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let done = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// The job published with the current generation: written by the caller before `generation`, read by
    /// the workers after they acquire it. Its own cache line.
    private let job: UnsafeMutablePointer<(body: UnsafeRawPointer?, record: Bool)>
    private var epoch: UInt64 = 0 // caller only

    static let shutdownTasks: UInt64 = 0xFFFF

    init(workers: Int, plannedCPUs: [Int]?, spinNanos: UInt64, simulateBindFailureOnSlot: Int?) {
        self.workers = workers
        self.plannedCPUs = plannedCPUs ?? Array(repeating: -1, count: workers)
        self.spinNanos = spinNanos
        self.simulateBindFailureOnSlot = simulateBindFailureOnSlot
        pinned = Atomic(plannedCPUs != nil)
        slotStride = (MemoryLayout<WorkerSlot>.stride + 127) / 128 * 128
        slots = UnsafeMutableRawPointer.allocate(byteCount: slotStride * workers, alignment: 128)
        for t in 0..<workers {
            var s = WorkerSlot()
            s.target = self.plannedCPUs[t]
            (slots + t * slotStride).initializeMemory(as: WorkerSlot.self, repeating: s, count: 1)
        }
        finishedFlags = UnsafeMutableRawPointer.allocate(byteCount: 128 * workers, alignment: 128)
        for t in 0..<workers {
            (finishedFlags + 128 * t).bindMemory(to: Atomic<UInt64>.self, capacity: 1).initialize(to: Atomic(0))
        }
        job = UnsafeMutableRawPointer.allocate(byteCount: 128, alignment: 128)
            .bindMemory(to: (body: UnsafeRawPointer?, record: Bool).self, capacity: 1)
        job.initialize(to: (nil, false))
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wake, nil)
        pthread_cond_init(done, nil)
    }

    func release() {
        pthread_mutex_destroy(mutex); pthread_cond_destroy(wake); pthread_cond_destroy(done)
        mutex.deallocate(); wake.deallocate(); done.deallocate(); UnsafeMutableRawPointer(job).deallocate()
        slots.deallocate()
        for t in 0..<workers { _ = finished(t).deinitialize(count: 1) }
        finishedFlags.deallocate()
    }

    @inline(__always)
    private func finished(_ t: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        (finishedFlags + 128 * t).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    @inline(__always)
    func slot(_ t: Int) -> UnsafeMutablePointer<WorkerSlot> {
        (slots + t * slotStride).assumingMemoryBound(to: WorkerSlot.self)
    }

    // MARK: caller side

    func dispatch(tasks: Int, body: UnsafeRawPointer, record: Bool) {
        job.pointee = (body, record)
        defer { job.pointee.body = nil }
        if tasks == 1 { _ = execute(slot: 0); return }
        publish(tasks: UInt64(tasks))
        _ = execute(slot: 0)
        waitForJoin(tasks: tasks)
    }

    /// Longest busy time of tasks 0..<tasks in the region that just joined (each worker's own line).
    func regionMaxBusy(tasks: Int) -> UInt64 {
        var m: UInt64 = 0
        for t in 0..<tasks { m = max(m, slot(t).pointee.regionBusyTicks) }
        return m
    }

    func shutdown() { publish(tasks: Self.shutdownTasks) }

    private func publish(tasks: UInt64) {
        epoch &+= 1
        // Sequentially consistent with the sleepers check: either a worker about to sleep sees this
        // generation, or we see it in `sleepers` and wake it (no lost wake-up).
        generation.store(epoch << 16 | tasks, ordering: .sequentiallyConsistent)
        if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
            pthread_mutex_lock(mutex)
            pthread_cond_broadcast(wake)
            pthread_mutex_unlock(mutex)
        }
    }

    /// Whether workers 1..<tasks have all finished the current epoch's job (`from`: the first one not yet seen).
    @inline(__always)
    private func joined(tasks: Int, from first: inout Int, sequentiallyConsistent: Bool = false) -> Bool {
        while first < tasks {
            let flag = finished(first)
            let seen = sequentiallyConsistent ? flag.pointee.load(ordering: .sequentiallyConsistent)
                                              : flag.pointee.load(ordering: .acquiring)
            if seen != epoch { return false }
            first += 1
        }
        return true
    }

    private func waitForJoin(tasks: Int) {
        var first = 1
        if joined(tasks: tasks, from: &first) { return }
        if spinNanos > 0 {
            let deadline = monotonicNanos() &+ spinNanos
            var spins = 0
            while !joined(tasks: tasks, from: &first) {
                dg_cpu_relax()
                spins &+= 1
                if spins & 63 == 0 && monotonicNanos() > deadline { break }
            }
            if first == tasks { return }
        }
        // Sequentially consistent with the workers' flag store then `callerWaiting` load: either a worker sees
        // the caller waiting and signals, or the caller sees its flag here (no lost wake-up).
        pthread_mutex_lock(mutex)
        callerWaiting.store(true, ordering: .sequentiallyConsistent)
        while !joined(tasks: tasks, from: &first, sequentiallyConsistent: true) { pthread_cond_wait(done, mutex) }
        callerWaiting.store(false, ordering: .relaxed)
        pthread_mutex_unlock(mutex)
    }

    // MARK: worker side

    /// Runs the current job's task `slot` on this thread, recording CPU and busy time.
    /// Returns the job's busy ticks (0 when not recorded).
    @inline(__always)
    private func execute(slot t: Int) -> UInt64 {
        let j = job.pointee
        guard let body = j.body else { return 0 }
        guard j.record else { invokeJob(body, t); return 0 }
        let s = slot(t)
        let cpuBefore = Int(dg_current_cpu())
        let t0 = CycleClock.now()
        invokeJob(body, t)
        let t1 = CycleClock.now()
        let cpuAfter = Int(dg_current_cpu())
        s.pointee.jobs &+= 1
        if s.pointee.lastCPU >= 0 && s.pointee.lastCPU != cpuBefore { s.pointee.migrations &+= 1 }
        if cpuBefore != cpuAfter { s.pointee.migrations &+= 1 }
        let target = s.pointee.target
        if target >= 0 && (cpuBefore != target || cpuAfter != target) { s.pointee.offTargetJobs &+= 1 }
        s.pointee.lastCPU = cpuAfter
        s.pointee.busyTicks &+= t1 &- t0
        s.pointee.regionBusyTicks = t1 &- t0
        return t1 &- t0
    }

    func workerMain(slot t: Int, started: DispatchSemaphore) {
        let target = plannedCPUs[t]
        if target >= 0 {
            let ok = simulateBindFailureOnSlot != t && (HwlocTopology.live?.bindThread(to: [target]) ?? false)
            slot(t).pointee.bindSucceeded = ok
        }
        started.signal()
        var seen: UInt64 = 0
        while true {
            let word = waitForGeneration(after: seen)
            seen = word
            let tasks = word & 0xFFFF
            if tasks == Self.shutdownTasks { break }
            guard t < Int(tasks) else { continue }
            _ = execute(slot: t)
            finished(t).pointee.store(word >> 16, ordering: .sequentiallyConsistent)
            if callerWaiting.load(ordering: .sequentiallyConsistent) {
                pthread_mutex_lock(mutex)
                pthread_cond_signal(done)
                pthread_mutex_unlock(mutex)
            }
        }
        if slot(t).pointee.target >= 0 { unbindCurrentThread(slot: t) } // hand the thread back to GCD unbound
    }

    /// Restores the calling thread to every allowed CPU and stops expecting it on a fixed PU.
    func unbindCurrentThread(slot t: Int) {
        slot(t).pointee.target = -1
        _ = HwlocTopology.live?.bindThread(to: Topology.current.allowedCPUs)
    }

    private func waitForGeneration(after seen: UInt64) -> UInt64 {
        var g = generation.load(ordering: .acquiring)
        if g != seen { return g }
        if spinNanos > 0 {
            let deadline = monotonicNanos() &+ spinNanos
            var spins = 0
            while true {
                dg_cpu_relax()
                g = generation.load(ordering: .acquiring)
                if g != seen { return g }
                spins &+= 1
                if spins & 63 == 0 && monotonicNanos() > deadline { break }
            }
        }
        pthread_mutex_lock(mutex)
        sleepers.add(1, ordering: .sequentiallyConsistent)
        g = generation.load(ordering: .sequentiallyConsistent)
        while g == seen {
            pthread_cond_wait(wake, mutex)
            g = generation.load(ordering: .sequentiallyConsistent)
        }
        sleepers.subtract(1, ordering: .sequentiallyConsistent)
        pthread_mutex_unlock(mutex)
        return g
    }
}
