/// A growable, 64-byte aligned Float buffer owned by one worker slot (packing scratch, tiles).
/// Not thread-safe: each slot is touched by one task at a time (ParallelExecutor's contract).
public final class AlignedBuffer: @unchecked Sendable {
    public private(set) var pointer: UnsafeMutablePointer<Float>
    public private(set) var capacity: Int

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
