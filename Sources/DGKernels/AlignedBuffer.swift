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
        if count > capacity {
            pointer.deallocate()
            capacity = max(count, capacity * 2)
            pointer = AlignedBuffer.allocate(capacity)
        }
        return pointer
    }

    static func allocate(_ n: Int) -> UnsafeMutablePointer<Float> {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: n * 4, alignment: 64)
        return raw.bindMemory(to: Float.self, capacity: n)
    }
}
