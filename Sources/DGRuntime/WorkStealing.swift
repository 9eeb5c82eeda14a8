import Synchronization

extension ParallelExecutor {
    /// Runs `body(item, slot)` once for every item in `0..<count`, on up to `workerCount` workers. Each worker
    /// starts on its own contiguous share (the static split, so neighbouring items stay on one core) and, once
    /// that is done, takes single items from the back of the other shares (pthreadpool's work stealing).
    ///
    /// Why: a static split waits for its slowest worker. On a 16-vCPU VM the same single-thread GEMM ran 1.7×
    /// slower on some vCPUs than on others (busy SMT siblings or neighbours), and 16 independent processes
    /// together did ~14× one core's work while the statically split GEMM reached 6–8×. With stealing a slow core
    /// delays the region by about one item. Items must be independent; a slot runs one item at a time.
    public func parallelForStealing(_ count: Int, _ body: (_ item: Int, _ slot: Int) -> Void) {
        guard count > 0 else { return }
        let parts = min(workerCount, count)
        if parts == 1 { for i in 0..<count { body(i, 0) }; return }
        let shares = StealingShares(count: count, parts: parts)
        run(tasks: parts) { t in
            while let i = shares.takeFront(t) { body(i, t) }
            var victim = t + 1
            for _ in 1..<parts {
                if victim == parts { victim = 0 }
                while let i = shares.takeBack(victim) { body(i, t) }
                victim += 1
            }
        }
    }
}

extension ParallelExecutor {
    /// `0..<count` cut into about `blocksPerWorker` contiguous ranges per worker, each a whole number of `unit`s (the
    /// last clipped to `count`) and dealt as evenly as they divide, run with `parallelForStealing`: `body(range, slot)`.
    public func parallelForStealing(_ count: Int, unit: Int, blocksPerWorker: Int, _ body: (Range<Int>, Int) -> Void) {
        guard count > 0 else { return }
        let units = (count + unit - 1) / unit
        let blocks = min(units, max(1, blocksPerWorker) * workerCount)
        parallelForStealing(blocks) { block, slot in
            body((block * units / blocks * unit)..<min(count, (block + 1) * units / blocks * unit), slot)
        }
    }
}

/// One [begin, end) share per worker, each packed into one atomic word on its own cache lines (the owner's
/// uncontended compare-exchange stays local). The owner takes from the front, thieves from the back; a
/// compare-exchange on the whole word hands every item out exactly once. The items' results are published by
/// the fork-join that ends the region, so relaxed ordering suffices here.
final class StealingShares: @unchecked Sendable {
    private static let stride = 128
    private let base: UnsafeMutableRawPointer
    private let parts: Int

    init(count: Int, parts: Int) {
        precondition(count <= Int(UInt32.max), "too many items")
        self.parts = parts
        base = .allocate(byteCount: parts * Self.stride, alignment: Self.stride)
        for t in 0..<parts {
            let lo = count * t / parts, hi = count * (t + 1) / parts
            (base + t * Self.stride).bindMemory(to: Atomic<UInt64>.self, capacity: 1)
                .initialize(to: Atomic(Self.pack(lo, hi)))
        }
    }

    deinit {
        for t in 0..<parts { _ = share(t).deinitialize(count: 1) }
        base.deallocate()
    }

    @inline(__always) private func share(_ t: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        (base + t * Self.stride).assumingMemoryBound(to: Atomic<UInt64>.self)
    }
    @inline(__always) private static func pack(_ lo: Int, _ hi: Int) -> UInt64 { UInt64(lo) << 32 | UInt64(hi) }

    /// The next item at the front of share `t`, or nil when it is empty.
    func takeFront(_ t: Int) -> Int? { take(t, front: true) }
    /// The last item of share `t`, or nil when it is empty.
    func takeBack(_ t: Int) -> Int? { take(t, front: false) }

    @inline(__always) private func take(_ t: Int, front: Bool) -> Int? {
        let word = share(t)
        var current = word.pointee.load(ordering: .relaxed)
        while true {
            let lo = Int(current >> 32), hi = Int(current & 0xFFFF_FFFF)
            if lo >= hi { return nil }
            let next = front ? Self.pack(lo + 1, hi) : Self.pack(lo, hi - 1)
            let (exchanged, original) = word.pointee.compareExchange(expected: current, desired: next, ordering: .relaxed)
            if exchanged { return front ? lo : hi - 1 }
            current = original
        }
    }
}
