/// A growable, 64-byte aligned Float buffer owned by one worker slot (packing scratch, tiles).
/// Not thread-safe: each slot is touched by one task at a time (ParallelExecutor's contract).
public final class AlignedBuffer: @unchecked Sendable {
    // Unchecked: `reserve` runs once per kernel call on hot paths (32 calls per per-sample layer at H = 512), and the
    // dynamic exclusivity check on these two fields was ~1.5 % of such a layer. Each buffer belongs to one worker slot.
    @exclusivity(unchecked) public private(set) var pointer: UnsafeMutablePointer<Float>
    @exclusivity(unchecked) public private(set) var capacity: Int

    public init(capacity: Int = 0) {
        self.capacity = max(capacity, 16)
        pointer = AlignedBuffer.allocate(self.capacity)
    }

    deinit { pointer.deallocate() }

    /// Ensures room for `count` floats; contents are not preserved when it grows.
    @inline(__always)
    public func reserve(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity { Self.grow(&pointer, &capacity, to: count) }
        return pointer
    }

    /// The growth rule both scratch kinds share: a fresh buffer of max(n, 2 × capacity) floats (contents not kept).
    /// Out of line: `reserve` is inlined into hot loops and rarely grows.
    @inline(never)
    static func grow(_ pointer: inout UnsafeMutablePointer<Float>, _ capacity: inout Int, to n: Int) {
        pointer.deallocate()
        capacity = max(n, capacity * 2)
        pointer = allocate(capacity)
    }

    static func allocate(_ n: Int) -> UnsafeMutablePointer<Float> {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: n * 4, alignment: 64)
        return raw.bindMemory(to: Float.self, capacity: n)
    }
}

/// One growable 64-byte-aligned float buffer per worker slot (`reserve(slot, count)`; contents are not preserved
/// when a slot grows). An `[AlignedBuffer]` element read retained and released its buffer — two atomic operations —
/// on every call that reserved scratch, ~1.5 % of a per-sample layer's 32 narrow GEMM calls; slots here are plain
/// pointers. Each slot belongs to one worker.
public final class SlotBuffers: @unchecked Sendable {
    private let pointers: UnsafeMutablePointer<UnsafeMutablePointer<Float>>
    private let capacities: UnsafeMutablePointer<Int>
    public let count: Int

    public init(count: Int, capacity: Int = 16) {
        self.count = count
        pointers = .allocate(capacity: count)
        capacities = .allocate(capacity: count)
        for s in 0..<count {
            capacities[s] = max(capacity, 16)
            (pointers + s).initialize(to: AlignedBuffer.allocate(capacities[s]))
        }
    }

    deinit {
        for s in 0..<count { pointers[s].deallocate() }
        pointers.deallocate(); capacities.deallocate()
    }

    /// Room for `n` floats in `slot`.
    @inline(__always)
    public func reserve(_ slot: Int, _ n: Int) -> UnsafeMutablePointer<Float> {
        assert(slot >= 0 && slot < count, "slot out of range")
        if n > capacities[slot] { AlignedBuffer.grow(&pointers[slot], &capacities[slot], to: n) }
        return pointers[slot]
    }
}
