import Glibc

/// Top-k routing with a capacity limit (Switch Transformer / GShard): who goes to which expert.
///
/// Assignment is rank-major: every token's first choice is placed (in token order) before any second
/// choice, so second choices are the first to be dropped. A dropped assignment skips its expert; a token
/// whose every choice was dropped gets no expert output (the MoE block passes it on as zero contribution —
/// in a residual network that is the identity; here the block is the whole hidden layer). Both are counted.
public struct RoutingPlan {
    public var experts: Int
    public var topK: Int
    public var capacity: Int
    /// Per expert: tokens (rows of the batch) it processes, in order.
    public var tokens: [[Int32]]
    /// Per expert: the combine weight of each of its tokens — the router probability for top-1 (Switch),
    /// the probability renormalised over the token's two choices for top-2 (GShard).
    public var weights: [[Float]]
    /// Per expert: which of the token's choices (0 or 1) each row is.
    public var ranks: [[UInt8]]
    /// Per token: its top-k experts (batch × topK).
    public var choices: [Int]
    /// Top-k selections per expert before capacity (for the load-balancing loss).
    public var selections: [Int]
    public var droppedAssignments: Int
    public var droppedTokens: Int

    /// Capacity per expert: ceil(cf · batch · k / E), at least 1.
    public static func capacity(batch: Int, experts: Int, topK: Int, factor: Double) -> Int {
        max(1, Int((factor * Double(batch * topK) / Double(experts)).rounded(.up)))
    }

    /// `probs` is batch × experts (softmax of router logits).
    public init(probs: UnsafePointer<Float>, batch: Int, experts: Int, topK: Int, capacityFactor: Double) {
        self.experts = experts; self.topK = topK
        capacity = RoutingPlan.capacity(batch: batch, experts: experts, topK: topK, factor: capacityFactor)
        tokens = Array(repeating: [], count: experts)
        weights = Array(repeating: [], count: experts)
        ranks = Array(repeating: [], count: experts)
        selections = Array(repeating: 0, count: experts)
        var choice = [Int](repeating: 0, count: batch * topK)
        for t in 0..<batch {
            let row = probs + t * experts
            var first = 0
            for e in 1..<max(experts, 1) where row[e] > row[first] { first = e }
            choice[t * topK] = first
            if topK == 2 {
                var second = first == 0 ? 1 : 0
                for e in 0..<experts where e != first && row[e] > row[second] { second = e }
                choice[t * topK + 1] = second
            }
        }
        self.choices = choice
        var kept = [Int](repeating: 0, count: batch)
        droppedAssignments = 0
        for rank in 0..<topK {
            for t in 0..<batch {
                let e = choice[t * topK + rank]
                selections[e] += 1
                if tokens[e].count < capacity {
                    var w = probs[t * experts + e]
                    if topK == 2 { w /= probs[t * experts + choice[t * 2]] + probs[t * experts + choice[t * 2 + 1]] }
                    tokens[e].append(Int32(t)); weights[e].append(w); ranks[e].append(UInt8(rank)); kept[t] += 1
                } else {
                    droppedAssignments += 1
                }
            }
        }
        droppedTokens = kept.reduce(0) { $0 + ($1 == 0 ? 1 : 0) }
    }

    public var assignedCount: Int { tokens.reduce(0) { $0 + $1.count } }
}

/// Row-wise softmax in place; returns each row's log-sum-exp in `lse` when given.
func softmaxRows(_ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int, lse: UnsafeMutablePointer<Float>? = nil) {
    for i in 0..<rows {
        let r = x + i * cols
        var mx = r[0]
        for j in 1..<cols where r[j] > mx { mx = r[j] }
        var s: Float = 0
        for j in 0..<cols { let e = expf(r[j] - mx); r[j] = e; s += e }
        let inv = 1 / s
        for j in 0..<cols { r[j] *= inv }
        lse?[i] = mx + logf(s)
    }
}
