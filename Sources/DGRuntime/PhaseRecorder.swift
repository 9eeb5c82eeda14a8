/// The phases of a forward pass the profiler separates (issue 9).
public enum Phase: String, CaseIterable, Codable, Sendable {
    /// Gate predictor / MoE router (its GEMMs and the router softmax).
    case gate
    /// Turning gate outputs into masks / routing plans (threshold, top-k, capacity, index lists).
    case mask
    /// Packing operand panels for the micro-kernel, including gathers through index maps (timed inside
    /// `GemmEngine` when `measuresPacking` is on, then moved out of `gemm`).
    case pack
    /// The GEMM itself: loop nest and micro-kernel (the bias + ReLU epilogue is fused in here).
    case gemm
    /// Zero-filling and masking outputs, building per-gate row lists (work around the GEMM, not in it).
    case gather
    /// Unfused element-wise work (output scaling of the random control).
    case activation
    /// MoE: weighted combine of expert outputs.
    case combine
    /// Everything inside the forward call not claimed by a phase above (bookkeeping).
    case other

    /// Dense index (the order of `allCases`).
    @inline(__always)
    public var index: Int {
        switch self {
        case .gate: return 0
        case .mask: return 1
        case .pack: return 2
        case .gemm: return 3
        case .gather: return 4
        case .activation: return 5
        case .combine: return 6
        case .other: return 7
        }
    }
    public static let count = 8
}

/// Per-phase, per-layer time and work of the forward calls since the last `reset()`.
///
/// Time is *exclusive*: `begin` charges the time since the last event to the phase on top of a small
/// stack, then pushes; `end` charges and pops. So nested phases never double count, and when the whole
/// call is wrapped in one outer phase (the profiler uses `.other` at layer -1) the phase times sum to the
/// outer region's wall time exactly (telescoping).
///
/// Cost: one clock read (TSC) and a few stores per `begin`/`end`; no locks, no allocation (storage is
/// allocated once for `layers`). The recorder belongs to the thread that runs the forward pass; models
/// hold it as an optional (`nil` = not profiled: one nil check per hook). Work (MACs, bytes) is passed
/// to `end` and comes from the kernels' own accounting (`KernelCost`), never re-derived.
public final class PhaseRecorder {
    /// Layer slots: -1 (model level) ..< layers. Events for other layers are charged to -1.
    public let layers: Int
    /// Clock; `nil` = `CycleClock.now()` (the TSC: ~10 ns a read, where clock_gettime costs ~45 ns in a VM).
    /// An injected clock counts nanoseconds (tests use deterministic ones).
    private let clock: (() -> UInt64)?
    /// Nanoseconds per clock tick.
    private let nanosPerTick: Double
    /// Cumulative packing time in this recorder's clock units (`GemmEngine.packTicks`, CycleClock ticks):
    /// sampled at `begin(.gemm)` and `end(.gemm)`; the difference moves from `gemm` to `pack` of that
    /// layer, and with it the bytes the packing read (`packBytesSource`; without one, all of the call's bytes read).
    public var packTicksSource: (() -> UInt64)?
    /// Cumulative bytes the packing read (`GemmEngine.packBytes`): when set, only those bytes move to `pack` (a layer
    /// whose GEMM packs a little and whose other kernels read much — dot products beside a shared-mask GEMM — kept
    /// all of them in pack: 32.7 MB "at 2603 GB/s").
    public var packBytesSource: (() -> UInt64)?

    private let slots: Int
    private let nanos: UnsafeMutablePointer<UInt64>  // clock ticks
    private let work: UnsafeMutablePointer<Int>  // 3 per cell: macs, bytesRead, bytesWritten
    private let calls: UnsafeMutablePointer<Int>
    private static let maxDepth = 16
    private let stack: UnsafeMutablePointer<Int>  // cell index per level
    private let stackPack: UnsafeMutablePointer<UInt64>
    private let stackPackBytes: UnsafeMutablePointer<UInt64>
    private var depth = 0
    private var last: UInt64 = 0
    /// begin/end pairs that did not match (a phase ended that was not on top); 0 in a correct model.
    public private(set) var mismatchedEnds = 0

    public init(layers: Int, clock: (() -> UInt64)? = nil) {
        self.layers = max(layers, 0)
        self.clock = clock
        nanosPerTick = clock == nil ? CycleClock.secondsPerTick * 1e9 : 1  // calibrated here, not mid-measurement
        slots = (self.layers + 1) * Phase.count
        nanos = .allocate(capacity: slots); nanos.initialize(repeating: 0, count: slots)
        work = .allocate(capacity: slots * 3); work.initialize(repeating: 0, count: slots * 3)
        calls = .allocate(capacity: slots); calls.initialize(repeating: 0, count: slots)
        stack = .allocate(capacity: PhaseRecorder.maxDepth); stack.initialize(repeating: 0, count: PhaseRecorder.maxDepth)
        stackPack = .allocate(capacity: PhaseRecorder.maxDepth); stackPack.initialize(repeating: 0, count: PhaseRecorder.maxDepth)
        stackPackBytes = .allocate(capacity: PhaseRecorder.maxDepth); stackPackBytes.initialize(repeating: 0, count: PhaseRecorder.maxDepth)
    }

    deinit {
        nanos.deallocate(); work.deallocate(); calls.deallocate(); stack.deallocate(); stackPack.deallocate(); stackPackBytes.deallocate()
    }

    @inline(__always) private func now() -> UInt64 { clock?() ?? CycleClock.now() }

    @inline(__always) private func cell(_ phase: Phase, _ layer: Int) -> Int {
        let slot = layer >= -1 && layer < layers ? layer + 1 : 0
        return slot * Phase.count + phase.index
    }

    /// Starts `phase` of `layer` (-1 = the model as a whole); the enclosing phase stops accruing time.
    @inline(__always)
    public func begin(_ phase: Phase, layer: Int) {
        let t = now()
        // Beyond maxDepth levels, time stays with the deepest tracked phase.
        if depth > 0 { nanos[stack[min(depth, PhaseRecorder.maxDepth) - 1]] &+= t &- last }
        if depth < PhaseRecorder.maxDepth {
            let c = cell(phase, layer)
            stack[depth] = c
            stackPack[depth] = phase == .gemm ? (packTicksSource?() ?? 0) : 0
            stackPackBytes[depth] = phase == .gemm ? (packBytesSource?() ?? 0) : 0
            calls[c] += 1
        }
        depth += 1
        last = t
    }

    /// Ends the innermost phase (which must be `phase` of `layer`) and adds the work it did.
    @inline(__always)
    public func end(_ phase: Phase, layer: Int, macs: Int = 0, bytesRead: Int = 0, bytesWritten: Int = 0) {
        let t = now()
        guard depth > 0 else { mismatchedEnds += 1; return }
        depth -= 1
        let c = cell(phase, layer)
        if depth < PhaseRecorder.maxDepth {
            let top = stack[depth]
            nanos[top] &+= t &- last
            if top != c { mismatchedEnds += 1 }
        } else {
            nanos[stack[PhaseRecorder.maxDepth - 1]] &+= t &- last
        }
        last = t
        var read = bytesRead
        if phase == .gemm, depth < PhaseRecorder.maxDepth, let source = packTicksSource {
            let packed = source() &- stackPack[depth]
            if packed > 0 {
                let p = cell(.pack, layer)
                let moved = min(packed, nanos[c])
                nanos[c] -= moved
                nanos[p] &+= moved
                calls[p] += 1
                let movedBytes = packBytesSource.map { min(read, Int(truncatingIfNeeded: $0() &- stackPackBytes[depth])) } ?? read
                work[p * 3 + 1] += movedBytes
                read -= movedBytes
            }
        }
        work[c * 3] += macs
        work[c * 3 + 1] += read
        work[c * 3 + 2] += bytesWritten
    }

    /// `body` timed as `phase` of `layer`; its work is added when it returns.
    @inline(__always)
    public func measure<R>(_ phase: Phase, layer: Int, _ body: () throws -> R) rethrows -> R {
        begin(phase, layer: layer)
        defer { end(phase, layer: layer) }
        return try body()
    }

    /// Clears all totals (and an unbalanced stack left by a thrown error).
    public func reset() {
        nanos.update(repeating: 0, count: slots)
        work.update(repeating: 0, count: slots * 3)
        calls.update(repeating: 0, count: slots)
        depth = 0
        mismatchedEnds = 0
    }

    /// One (layer, phase) cell's totals since the last reset.
    public struct Entry: Sendable, Equatable, Codable {
        public var layer: Int
        public var phase: Phase
        public var nanoseconds: UInt64
        public var calls: Int
        public var macs: Int
        public var bytesRead: Int
        public var bytesWritten: Int
    }

    /// Cells that were entered at least once, by layer (-1 first) then phase order.
    public func entries() -> [Entry] {
        var out: [Entry] = []
        for slot in 0...layers {
            for phase in Phase.allCases {
                let c = slot * Phase.count + phase.index
                guard calls[c] > 0 || nanos[c] > 0 || work[c * 3] != 0 || work[c * 3 + 1] != 0 else { continue }
                out.append(Entry(layer: slot - 1, phase: phase, nanoseconds: UInt64((Double(nanos[c]) * nanosPerTick).rounded()), calls: calls[c],
                                 macs: work[c * 3], bytesRead: work[c * 3 + 1], bytesWritten: work[c * 3 + 2]))
            }
        }
        return out
    }

    /// Sum of all phase times since the last reset.
    public var totalNanoseconds: UInt64 {
        var s: UInt64 = 0
        for i in 0..<slots { s &+= nanos[i] }
        return UInt64((Double(s) * nanosPerTick).rounded())
    }
}
