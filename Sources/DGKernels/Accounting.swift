/// What one kernel call executed: multiply-adds and bytes, declared next to the code that does them.
/// Reporters only divide these; nobody re-derives them from shapes.
public struct KernelCost: Sendable, Codable, Equatable, AdditiveArithmetic {
    /// Multiply-adds executed (1 MAC = 2 FLOPs).
    public var macs: Int
    /// Bytes of operands read from their source layout (weights + activations, each once).
    public var bytesRead: Int
    /// Bytes of results written.
    public var bytesWritten: Int

    public init(macs: Int = 0, bytesRead: Int = 0, bytesWritten: Int = 0) {
        self.macs = macs; self.bytesRead = bytesRead; self.bytesWritten = bytesWritten
    }
    public static let zero = KernelCost()
    public var flops: Double { Double(macs) * 2 }
    public static func + (a: KernelCost, b: KernelCost) -> KernelCost {
        KernelCost(macs: a.macs + b.macs, bytesRead: a.bytesRead + b.bytesRead, bytesWritten: a.bytesWritten + b.bytesWritten)
    }
    public static func - (a: KernelCost, b: KernelCost) -> KernelCost {
        KernelCost(macs: a.macs - b.macs, bytesRead: a.bytesRead - b.bytesRead, bytesWritten: a.bytesWritten - b.bytesWritten)
    }
}

/// Work split by purpose, so both the paper's relative MAC (useful only) and the net relative MAC
/// (useful + overhead) come from the same record.
public struct CostBreakdown: Sendable, Codable, Equatable {
    /// MACs for active units (what the paper counts).
    public var useful: KernelCost
    /// Gate / router / mask building / packing work.
    public var overhead: KernelCost
    /// MACs computed and then thrown away by a mask (dense-then-mask strategies).
    public var wasted: KernelCost

    public init(useful: KernelCost = .zero, overhead: KernelCost = .zero, wasted: KernelCost = .zero) {
        self.useful = useful; self.overhead = overhead; self.wasted = wasted
    }
    public static let zero = CostBreakdown()
    public var total: KernelCost { useful + overhead + wasted }
    public static func + (a: CostBreakdown, b: CostBreakdown) -> CostBreakdown {
        CostBreakdown(useful: a.useful + b.useful, overhead: a.overhead + b.overhead, wasted: a.wasted + b.wasted)
    }
    public static func += (a: inout CostBreakdown, b: CostBreakdown) { a = a + b }
}
