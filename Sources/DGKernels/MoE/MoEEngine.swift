import Glibc
import DGRuntime

/// Routing settings of a Switch/GShard-style mixture-of-experts FFN.
public struct MoEConfig: Sendable, Codable, Equatable {
    public var experts: Int
    /// Experts per token (1 = Switch, 2 = GShard).
    public var topK: Int
    /// capacity per expert = ceil(capacityFactor · tokens · topK / experts).
    public var capacityFactor: Double
    /// With topK > 1, scale the chosen gate probabilities to sum to 1 (GShard); topK = 1 keeps the raw probability (Switch).
    public var normalizeTopK: Bool

    public init(experts: Int, topK: Int, capacityFactor: Double, normalizeTopK: Bool = true) {
        self.experts = experts; self.topK = topK; self.capacityFactor = capacityFactor; self.normalizeTopK = normalizeTopK
    }

    public func validate() throws {
        guard experts >= 1 else { throw SparseError.badDimension(name: "experts", value: experts) }
        guard topK >= 1 && topK <= experts else { throw SparseError.badTopK(k: topK, experts: experts) }
        guard capacityFactor.isFinite && capacityFactor > 0 else { throw SparseError.badCapacityFactor(capacityFactor) }
    }

    public func capacity(tokens: Int) -> Int {
        Int((capacityFactor * Double(tokens * topK) / Double(experts)).rounded(.up))
    }
}

/// Weights of an MoE FFN, contiguous per kind: router E×D (+ bias E); expert e has
/// W1_e H×D, b1_e H, W2_e Dout×H, b2_e Dout (all row-major, expert-major).
public struct MoEWeights: Sendable {
    public let inFeatures: Int
    public let hidden: Int
    public let outFeatures: Int
    public let experts: Int
    public var router: [Float]
    public var routerBias: [Float]
    public var w1: [Float]
    public var b1: [Float]
    public var w2: [Float]
    public var b2: [Float]

    public init(inFeatures d: Int, hidden h: Int, outFeatures o: Int, experts e: Int, router: [Float], routerBias: [Float],
                w1: [Float], b1: [Float], w2: [Float], b2: [Float]) throws {
        for (name, v) in [("inFeatures", d), ("hidden", h), ("outFeatures", o), ("experts", e)] where v < 1 {
            throw SparseError.badDimension(name: name, value: v)
        }
        let checks: [(String, Int, Int)] = [
            ("router (experts × inFeatures)", router.count, e * d), ("routerBias (experts)", routerBias.count, e),
            ("w1 (experts × hidden × inFeatures)", w1.count, e * h * d), ("b1 (experts × hidden)", b1.count, e * h),
            ("w2 (experts × outFeatures × hidden)", w2.count, e * o * h), ("b2 (experts × outFeatures)", b2.count, e * o),
        ]
        for (what, got, expected) in checks where got != expected {
            throw SparseError.weightsShape(what: what, got: got, expected: expected)
        }
        inFeatures = d; hidden = h; outFeatures = o; experts = e
        self.router = router; self.routerBias = routerBias; self.w1 = w1; self.b1 = b1; self.w2 = w2; self.b2 = b2
    }

    /// Uniform ±1/√fan-in weights from a seed (synthetic benchmarks and tests).
    public static func random(inFeatures d: Int, hidden h: Int, outFeatures o: Int, experts e: Int, seed: UInt64) throws -> MoEWeights {
        var rng = SplitMix64(seed: seed)
        func fill(_ n: Int, _ fanIn: Int) -> [Float] {
            let s = 2 / Float(fanIn).squareRoot()
            return (0..<n).map { _ in (rng.nextFloat() - 0.5) * s }
        }
        return try MoEWeights(inFeatures: d, hidden: h, outFeatures: o, experts: e,
                              router: fill(e * d, d), routerBias: fill(e, d), w1: fill(e * h * d, d), b1: fill(e * h, d),
                              w2: fill(e * o * h, h), b2: fill(e * o, h))
    }

    /// MACs of one token through one expert (both layers).
    public var expertMACsPerToken: Int { inFeatures * hidden + hidden * outFeatures }
}

/// Expert weights packed once into NR-unit panels (`MoEEngine.pack`): expert GEMMs then pack only activations.
public final class MoEPackedWeights: @unchecked Sendable {
    public let w1: [PackedWeights]
    public let w2: [PackedWeights]
    init(w1: [PackedWeights], w2: [PackedWeights]) { self.w1 = w1; self.w2 = w2 }
}

/// What an MoE forward did: routing outcome and exact cost (router MACs are `overhead`).
public struct MoEReport: Sendable, Codable, Equatable {
    /// Assignments routed to each expert before the capacity limit.
    public var requested: [Int]
    /// Assignments each expert computed (≤ capacity).
    public var load: [Int]
    public var capacity: Int
    /// Assignments over capacity (not computed).
    public var droppedAssignments: Int
    /// Tokens with no computed assignment: passed through as identity when outFeatures == inFeatures, else 0.
    public var droppedTokens: Int
    public var cost: CostBreakdown
    /// MACs if every token ran exactly topK experts with no drops (the layer's nominal work).
    public var nominalMACs: Int
    /// Wall time of each phase (seconds): router (logits GEMM + softmax/top-k), dispatch (capacity, gather
    /// lists), experts (the GEMM pairs), combine. Says where time goes when MoE is slower than dense.
    public var phaseSeconds: [String: Double] = [:]
}

/// Mixture-of-experts FFN on the dense kernels: router GEMM → softmax → top-k → capacity → per-expert
/// gathered GEMM pair (D→H ReLU → Dout) → weighted scatter-combine. Parallel over experts (each worker its
/// own serial GEMM engine, experts assigned longest-first) and over tokens (routing and combine).
/// Calls on one engine must not overlap.
public final class MoEEngine: @unchecked Sendable {
    public let gemm: GemmEngine
    private let slotEngines: [GemmEngine]
    private let logits = AlignedBuffer()
    private let hidden = AlignedBuffer()
    private let expertOut = AlignedBuffer()

    /// Receives the router / dispatch / experts / combine phases when profiling (`dgperf profile`); nil otherwise.
    public var recorder: PhaseRecorder?

    public init(gemm: GemmEngine) {
        self.gemm = gemm
        slotEngines = (0..<gemm.workerCount).map { _ in GemmEngine(kernels: gemm.kernels, executor: SerialExecutor()) }
    }

    /// Packs every expert's W1 and W2 once (for `forward(…, packed:)`); the router stays unpacked (it is small).
    public func pack(_ weights: MoEWeights) -> MoEPackedWeights {
        let d = weights.inFeatures, h = weights.hidden, o = weights.outFeatures
        return weights.w1.withUnsafeBufferPointer { w1 in
            weights.w2.withUnsafeBufferPointer { w2 in
                MoEPackedWeights(
                    w1: (0..<weights.experts).map { gemm.packWeights(w1.baseAddress! + $0 * h * d, n: h, k: d, ldw: d) },
                    w2: (0..<weights.experts).map { gemm.packWeights(w2.baseAddress! + $0 * o * h, n: o, k: h, ldw: h) })
            }
        }
    }

    /// y = MoE(x) for `tokens` rows of x (tokens × inFeatures); y is tokens × outFeatures.
    /// `packed` (from `pack(weights)`) skips packing the expert weights on every call.
    @discardableResult
    public func forward(input x: UnsafePointer<Float>, tokens: Int, weights: MoEWeights, config: MoEConfig,
                        packed: MoEPackedWeights? = nil, output y: UnsafeMutablePointer<Float>) throws -> MoEReport {
        try config.validate()
        if let p = packed {
            guard p.w1.count == weights.experts, p.w2.count == weights.experts,
                  p.w1.allSatisfy({ $0.n == weights.hidden && $0.k == weights.inFeatures && $0.nr == gemm.kernels.nr }),
                  p.w2.allSatisfy({ $0.n == weights.outFeatures && $0.k == weights.hidden && $0.nr == gemm.kernels.nr }) else {
                throw SparseError.weightsShape(what: "packed expert weights (pack them with this engine from these weights)",
                                               got: p.w1.count, expected: weights.experts)
            }
        }
        guard tokens >= 1 else { throw SparseError.badDimension(name: "tokens", value: tokens) }
        guard config.experts == weights.experts else {
            throw SparseError.weightsShape(what: "config.experts vs weights.experts", got: config.experts, expected: weights.experts)
        }
        let d = weights.inFeatures, hDim = weights.hidden, o = weights.outFeatures, e = config.experts, k = config.topK
        let workers = gemm.workerCount

        var phase: [String: Double] = [:]
        var mark = monotonicNanos()
        func lap(_ name: String) { let now = monotonicNanos(); phase[name] = Double(now - mark) * 1e-9; mark = now }
        // `dgperf profile`: router → gate, dispatch → mask, expert GEMMs → gemm (layer 0), combine (layer 1).
        let rec = recorder
        rec?.begin(.gate, layer: 0)
        // 1. Router logits (overhead): tokens × E.
        let lg = logits.reserve(tokens * e)
        let routerCost = weights.router.withUnsafeBufferPointer { r in
            weights.routerBias.withUnsafeBufferPointer { rb in
                gemm.gemm(m: tokens, n: e, k: d, a: .rowMajor(x, ld: d), b: .rowMajor(r.baseAddress!, ld: d, transposed: true),
                          c: OutputOperand(base: lg, rowStride: e), epilogue: Epilogue(bias: rb.baseAddress))
            }
        }

        // 2. Softmax + top-k per token (parallel over tokens).
        var choice = [Int32](repeating: 0, count: tokens * k)
        var gate = [Float](repeating: 0, count: tokens * k)
        choice.withUnsafeMutableBufferPointer { ch in
            gate.withUnsafeMutableBufferPointer { gt in
                let chp = UncheckedSendableBox(ch.baseAddress!), gtp = UncheckedSendableBox(gt.baseAddress!)
                let body: (Range<Int>, Int) -> Void = { range, _ in
                    for t in range {
                        MoEEngine.route(logits: lg + t * e, experts: e, topK: k, normalize: config.normalizeTopK,
                                        choice: chp.value + t * k, gate: gtp.value + t * k)
                    }
                }
                if workers > 1 && tokens >= 2 && tokens * e * d >= gemm.parallelThresholdMACs { gemm.executor.parallelFor(tokens, grain: 16, body) } else { body(0..<tokens, 0) }
            }
        }

        lap("router")
        rec?.end(.gate, layer: 0, cost: routerCost)
        rec?.begin(.mask, layer: 0)
        // 3. Capacity: first choices of all tokens (in token order) before second choices (GShard priority).
        let capacity = config.capacity(tokens: tokens)
        var requested = [Int](repeating: 0, count: e)
        var load = [Int](repeating: 0, count: e)
        var slot = [Int32](repeating: -1, count: tokens * k)
        var members = [[Int32]](repeating: [], count: e)
        var dropped = 0
        for i in 0..<k {
            for t in 0..<tokens {
                let ex = Int(choice[t * k + i])
                requested[ex] += 1
                if load[ex] < capacity {
                    slot[t * k + i] = Int32(load[ex]); load[ex] += 1; members[ex].append(Int32(t))
                } else {
                    dropped += 1
                }
            }
        }
        var rowOffset = [Int](repeating: 0, count: e + 1)
        for ex in 0..<e { rowOffset[ex + 1] = rowOffset[ex] + load[ex] }
        let kept = rowOffset[e]
        let flatMembers = members.flatMap { $0 }

        lap("dispatch")
        rec?.end(.mask, layer: 0)
        rec?.begin(.gemm, layer: 0)
        // 4. Experts: gathered rows → ReLU(x·W1ᵀ + b1) → ·W2ᵀ + b2, into expert-major scratch.
        let hs = hidden.reserve(max(1, kept * hDim))
        let os = expertOut.reserve(max(1, kept * o))
        weights.w1.withUnsafeBufferPointer { w1 in weights.b1.withUnsafeBufferPointer { b1 in
        weights.w2.withUnsafeBufferPointer { w2 in weights.b2.withUnsafeBufferPointer { b2 in
        flatMembers.withUnsafeBufferPointer { rows in
            let runExpert: (Int, GemmEngine) -> Void = { ex, engine in
                let n = load[ex]
                guard n > 0 else { return }
                let rowMap = rows.baseAddress! + rowOffset[ex]
                let hOut = hs + rowOffset[ex] * hDim
                let xRows = MatrixOperand(base: x, rowStride: d, colStride: 1, rowIndex: rowMap)
                let e1 = Epilogue(bias: b1.baseAddress! + ex * hDim, relu: true), e2 = Epilogue(bias: b2.baseAddress! + ex * o)
                let c1 = OutputOperand(base: hOut, rowStride: hDim), c2 = OutputOperand(base: os + rowOffset[ex] * o, rowStride: o)
                if let p = packed {
                    engine.gemm(m: n, a: xRows, packed: p.w1[ex], c: c1, epilogue: e1)
                    engine.gemm(m: n, a: .rowMajor(UnsafePointer(hOut), ld: hDim), packed: p.w2[ex], c: c2, epilogue: e2)
                } else {
                    engine.gemm(m: n, n: hDim, k: d, a: xRows, b: .rowMajor(w1.baseAddress! + ex * hDim * d, ld: d, transposed: true),
                                c: c1, epilogue: e1)
                    engine.gemm(m: n, n: o, k: hDim, a: .rowMajor(UnsafePointer(hOut), ld: hDim),
                                b: .rowMajor(w2.baseAddress! + ex * o * hDim, ld: hDim, transposed: true), c: c2, epilogue: e2)
                }
            }
            let busy = (0..<e).filter { load[$0] > 0 }
            if workers > 1 && busy.count >= workers {
                // Longest-processing-time-first assignment of experts to worker slots.
                var bins = [[Int]](repeating: [], count: workers)
                var binLoad = [Int](repeating: 0, count: workers)
                for ex in busy.sorted(by: { load[$0] > load[$1] }) {
                    let s = binLoad.indices.min { binLoad[$0] < binLoad[$1] }!
                    bins[s].append(ex); binLoad[s] += load[ex]
                }
                gemm.executor.run(tasks: workers) { s in for ex in bins[s] { runExpert(ex, self.slotEngines[s]) } }
            } else {
                for ex in busy { runExpert(ex, gemm) }  // few busy experts: each GEMM splits across workers instead
            }
        }}}}}

        lap("experts")
        let perToken = weights.expertMACsPerToken
        let useful = KernelCost(macs: kept * perToken,
                                bytesRead: 4 * (kept * (d + hDim) + load.filter { $0 > 0 }.count * perToken),
                                bytesWritten: 4 * kept * (hDim + o))
        rec?.end(.gemm, layer: 0, cost: useful)
        rec?.begin(.combine, layer: 1)
        // 5. Combine (parallel over tokens): y[t] = Σ kept gate · expert output; identity/zero if all dropped.
        var droppedTokens = 0
        let identity = o == d
        slot.withUnsafeBufferPointer { sl in choice.withUnsafeBufferPointer { ch in gate.withUnsafeBufferPointer { gt in
            let body: (Range<Int>, Int) -> Void = { range, _ in
                for t in range {
                    let yt = y + t * o
                    var any = false
                    for i in 0..<k {
                        let s = Int(sl[t * k + i])
                        guard s >= 0 else { continue }
                        let src = os + (rowOffset[Int(ch[t * k + i])] + s) * o
                        let g = gt[t * k + i]
                        if any { for j in 0..<o { yt[j] += g * src[j] } } else { for j in 0..<o { yt[j] = g * src[j] } }
                        any = true
                    }
                    if !any {
                        if identity { yt.update(from: x + t * d, count: d) } else { yt.update(repeating: 0, count: o) }
                    }
                }
            }
            if workers > 1 && tokens >= 2 && tokens * o * 64 >= gemm.parallelThresholdMACs { gemm.executor.parallelFor(tokens, grain: 16, body) } else { body(0..<tokens, 0) }
        }}}
        for t in 0..<tokens where (0..<k).allSatisfy({ slot[t * k + $0] < 0 }) { droppedTokens += 1 }

        lap("combine")
        let combineCost = KernelCost(bytesRead: 4 * kept * o + 8 * tokens * k, bytesWritten: 4 * tokens * o)
        rec?.end(.combine, layer: 1, cost: combineCost)
        let overhead = routerCost + combineCost
        return MoEReport(requested: requested, load: load, capacity: capacity, droppedAssignments: dropped,
                         droppedTokens: droppedTokens, cost: CostBreakdown(useful: useful, overhead: overhead),
                         nominalMACs: tokens * k * perToken, phaseSeconds: phase)
    }

    /// Softmax over one token's logits, then the k largest probabilities (ties → lower expert id).
    static func route(logits: UnsafePointer<Float>, experts e: Int, topK k: Int, normalize: Bool,
                      choice: UnsafeMutablePointer<Int32>, gate: UnsafeMutablePointer<Float>) {
        var mx = -Float.infinity
        for j in 0..<e { mx = max(mx, logits[j]) }
        var sum: Float = 0
        for j in 0..<e { sum += expf(logits[j] - mx) }
        var taken: UInt64 = 0  // experts ≤ 64 use the bitmask; more fall back to a linear check
        var chosen: [Int] = []
        for i in 0..<k {
            var best = -1
            for j in 0..<e {
                let used = e <= 64 ? (taken >> UInt64(j)) & 1 == 1 : chosen.contains(j)
                if !used && (best < 0 || logits[j] > logits[best]) { best = j }
            }
            if e <= 64 { taken |= 1 << UInt64(best) } else { chosen.append(best) }
            choice[i] = Int32(best)
            gate[i] = expf(logits[best] - mx) / sum
        }
        if normalize && k > 1 {
            var s: Float = 0
            for i in 0..<k { s += gate[i] }
            for i in 0..<k { gate[i] /= s }
        }
    }
}

@inline(__always) private func expf(_ x: Float) -> Float { Float(Glibc.exp(Double(x))) }
