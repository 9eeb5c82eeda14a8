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

/// How an MoE forward ran its expert GEMMs on the workers.
public enum ExpertSchedule: String, Sendable, Codable, Equatable {
    /// One worker (or too little work to split): every expert in turn on one core.
    case serial
    /// One busy expert after another, each GEMM split over all workers on its own (two fork-joins per expert).
    case inTurn
    /// Whole experts (both layers) on the workers' own engines, assigned longest first: one region.
    case perWorker
    /// One work-stealing region per layer over items of equal work cut from every busy expert's weight panels.
    case sharedRegion
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
    /// How the expert GEMMs were spread over the workers.
    public var schedule: ExpertSchedule
    /// Wall time of each phase (seconds): router (logits GEMM + softmax/top-k), dispatch (capacity, gather
    /// lists), experts (the GEMM pairs), combine. Says where time goes when MoE is slower than dense.
    public var phaseSeconds: [String: Double] = [:]
}

/// Mixture-of-experts FFN on the dense kernels: router GEMM → softmax → top-k → capacity → per-expert
/// gathered GEMM pair (D→H ReLU → Dout) → weighted scatter-combine. Parallel over experts (each worker its own
/// serial GEMM engine, experts assigned longest-first) or, with fewer busy experts than workers, over items of
/// equal work cut from each layer's panels of all experts; and over tokens (routing and combine).
/// Calls on one engine must not overlap.
public final class MoEEngine: @unchecked Sendable {
    public let gemm: GemmEngine
    private let slotEngines: [GemmEngine]
    private let logits = AlignedBuffer()
    private let hidden = AlignedBuffer()
    private let expertOut = AlignedBuffer()

    /// Receives the router / dispatch / experts / combine phases when profiling (`dgperf profile`); nil otherwise.
    /// (This and `fewExpertsSchedule` skip dynamic exclusivity checks: set between calls, see `GemmEngine`'s knobs.)
    @exclusivity(unchecked) public var recorder: PhaseRecorder?

    /// How the experts run when at least 2 but fewer than `workerCount` of them are busy (8 experts on 16 cores):
    /// `.sharedRegion` unless a comparison asks for `.inTurn` (`dgperf kernel --masks moe --all-strategies` times both).
    @exclusivity(unchecked) public var fewExpertsSchedule = FewExpertsSchedule.sharedRegion
    public enum FewExpertsSchedule: String, Sendable, CaseIterable { case sharedRegion, inTurn }

    public init(gemm: GemmEngine) {
        self.gemm = gemm
        slotEngines = (0..<gemm.workerCount).map { _ in GemmEngine(kernels: gemm.kernels, executor: SerialExecutor()) }
    }

    /// Packs every expert's W1 and W2 once (for `forward(…, packed:)`); the router stays unpacked (it is small).
    public func pack(_ weights: MoEWeights) -> MoEPackedWeights {
        let d = weights.inFeatures, h = weights.hidden, o = weights.outFeatures
        return weights.w1.withUnsafeBufferPointer { w1 in
            weights.w2.withUnsafeBufferPointer { w2 in
                let packed = MoEPackedWeights(
                    w1: (0..<weights.experts).map { gemm.packWeights(w1.baseAddress! + $0 * h * d, n: h, k: d, ldw: d) },
                    w2: (0..<weights.experts).map { gemm.packWeights(w2.baseAddress! + $0 * o * h, n: o, k: h, ldw: h) })
                // A call reads every busy expert in turn: together they overflow the cache even where each fits.
                let all = packed.w1 + packed.w2
                if PackedWeights.streams(bytes: all.reduce(0) { $0 + $1.bytes }) { for p in all { p.streamed = true } }
                return packed
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
        let rowOffset = load.reduce(into: [0]) { $0.append($0.last! + $1) }
        let kept = rowOffset[e]
        let flatMembers = members.flatMap { $0 }

        lap("dispatch")
        rec?.end(.mask, layer: 0)
        rec?.begin(.gemm, layer: 0)
        // 4. Experts: gathered rows → ReLU(x·W1ᵀ + b1) → ·W2ᵀ + b2, into expert-major scratch.
        let hs = hidden.reserve(max(1, kept * hDim))
        let os = expertOut.reserve(max(1, kept * o))
        let nr = gemm.kernels.nr
        var schedule = ExpertSchedule.serial
        weights.w1.withUnsafeBufferPointer { w1 in weights.b1.withUnsafeBufferPointer { b1 in
        weights.w2.withUnsafeBufferPointer { w2 in weights.b2.withUnsafeBufferPointer { b2 in
        flatMembers.withUnsafeBufferPointer { rows in
            // Expert `ex`'s rows × panels `panels` of layer 1 (x·W1ᵀ, ReLU) or layer 2 (h·W2ᵀ) on `engine`.
            let load = load  // immutable copies for the workers' closures (no shared boxes)
            // `then`: the packed weights the same engine multiplies next (streamed ones are prefetched a panel ahead).
            let runPiece: (_ layer: Int, _ ex: Int, _ panels: Range<Int>, GemmEngine, _ then: PackedWeights?) -> Void = { layer, ex, panels, engine, then in
                let n = load[ex], r0 = rowOffset[ex]
                let (kIn, nOut) = layer == 1 ? (d, hDim) : (hDim, o)
                let a = layer == 1 ? MatrixOperand(base: x, rowStride: d, colStride: 1, rowIndex: rows.baseAddress! + r0)
                                   : .rowMajor(UnsafePointer(hs + r0 * hDim), ld: hDim)
                let out = layer == 1 ? hs + r0 * hDim : os + r0 * o
                let bias = layer == 1 ? b1.baseAddress! + ex * hDim : b2.baseAddress! + ex * o
                if let p = packed {
                    // C's columns are the weights' units: a panel subset writes its own columns of the full-width rows.
                    engine.gemm(m: n, a: a, packed: layer == 1 ? p.w1[ex] : p.w2[ex],
                                panelRange: panels, c: OutputOperand(base: out, rowStride: nOut),
                                epilogue: Epilogue(bias: bias, relu: layer == 1), then: then)
                } else {
                    let c0 = panels.lowerBound * nr, c1 = min(nOut, panels.upperBound * nr)
                    let w = layer == 1 ? w1.baseAddress! + ex * hDim * d : w2.baseAddress! + ex * o * hDim
                    engine.gemm(m: n, n: c1 - c0, k: kIn, a: a, b: .rowMajor(w + c0 * kIn, ld: kIn, transposed: true),
                                c: OutputOperand(base: out + c0, rowStride: nOut), epilogue: Epilogue(bias: bias + c0, relu: layer == 1))
                }
            }
            let panels1 = (hDim + nr - 1) / nr, panels2 = (o + nr - 1) / nr
            // Whole expert `ex` on `engine`, which runs expert `following` next (if any).
            let runExpert: (Int, GemmEngine, Int?) -> Void = { ex, engine, following in
                runPiece(1, ex, 0..<panels1, engine, packed?.w2[ex])
                runPiece(2, ex, 0..<panels2, engine, following.flatMap { packed?.w1[$0] })
            }
            let runInOrder: ([Int], GemmEngine) -> Void = { experts, engine in
                for (i, ex) in experts.enumerated() { runExpert(ex, engine, i + 1 < experts.count ? experts[i + 1] : nil) }
            }
            let busy = (0..<e).filter { load[$0] > 0 }
            let expertWorkers = gemm.workers(forMACs: kept * weights.expertMACsPerToken)
            if expertWorkers <= 1 {
                schedule = .serial
                runInOrder(busy, gemm)
            } else if busy.count == 1 || (busy.count < expertWorkers && fewExpertsSchedule == .inTurn) {
                schedule = .inTurn
                // One busy expert (or `.inTurn` asked for): its GEMMs split on their own (the GEMM's rectangles; on
                // 2 threads the single-expert cells ran 0–10 % faster that way than cut into the items below).
                runInOrder(busy, gemm)
            } else if busy.count >= expertWorkers {
                schedule = .perWorker
                // A busy expert per worker at least: whole experts (both layers on one core, one region), assigned
                // longest-processing-time first. Measured against the items below on 2 threads (8 experts, pre-packed):
                // those were 5–15 % slower (a second region; stealing whole experts ends less even than LPT).
                var bins = [[Int]](repeating: [], count: expertWorkers)
                var binLoad = [Int](repeating: 0, count: expertWorkers)
                for ex in busy.sorted(by: { load[$0] > load[$1] }) {
                    let s = binLoad.indices.min { binLoad[$0] < binLoad[$1] }!
                    bins[s].append(ex); binLoad[s] += load[ex]
                }
                gemm.executor.run(tasks: expertWorkers) { s in runInOrder(bins[s], self.slotEngines[s]) }
            } else {
                // 2 ≤ busy experts < workers (8 experts on 16 cores): a layer of every expert in one work-stealing region,
                // cut into items of equal work (`items`), each on its worker's serial engine.
                schedule = .sharedRegion
                for (layer, width, kIn) in [(1, hDim, d), (2, o, hDim)] {
                    let plan = MoEEngine.items(load: load, width: width, nr: nr, k: kIn, workers: expertWorkers,
                                               minMACs: gemm.parallelThresholdMACs)
                    let engines = slotEngines
                    plan.segments.withUnsafeBufferPointer { segments in plan.starts.withUnsafeBufferPointer { starts in
                        gemm.executor.parallelForStealing(starts.count - 1) { i, slot in
                            for s in starts[i]..<starts[i + 1] { runPiece(layer, segments[s].expert, segments[s].panels, engines[slot], nil) }
                        }
                    }}
                }
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
                         nominalMACs: tokens * k * perToken, schedule: schedule, phaseSeconds: phase)
    }

    /// A run of one expert's weight panels (NR units each) inside a work item: its rows × those panels' columns.
    struct Segment: Equatable {
        let expert: Int
        let panels: Range<Int>
    }

    /// Work items as one flat list (the workers read it through unsafe pointers, no reference counting on shared
    /// arrays): item i is `segments[starts[i]..<starts[i + 1]]`.
    struct ItemPlan: Equatable {
        let segments: [Segment]
        let starts: [Int]
        var count: Int { starts.count - 1 }
        func item(_ i: Int) -> ArraySlice<Segment> { segments[starts[i]..<starts[i + 1]] }
    }

    /// Cuts one expert layer (every busy expert's rows × `width` output units in NR-unit panels, `k` deep) into work
    /// items of about equal multiply-adds: the experts' panels laid end to end, expert after expert, and cut at panel
    /// boundaries, so an item is a run of panels of one expert or the end of one and the start of the next.
    /// Items: `WorkItems.itemsPerWorker` per worker, at most one per panel and one per `minMACs` of work, and a
    /// multiple of the workers once there are that many (3 equal items on 2 workers run as 2 + 1).
    /// Why: before, fewer busy experts than workers (8 experts on 16) ran one after another, each GEMM split on its
    /// own (two fork-joins per expert, rectangles of a few rows × one panel), and MoE/dense-equivalent went from
    /// 1.15× at 1 thread to 1.45× (H = 2048) and 2.06× (H = 512) at 16. The floor: one batch-1 expert
    /// (784 → 512 → 784) cut into 8 pieces per layer took 1.13–1.19× the time of a dense layer on 2 threads, in
    /// 2 pieces 1.02–1.09× (each piece is a GEMM call and restarts its weight streams).
    static func items(load: [Int], width: Int, nr: Int, k: Int, workers: Int, minMACs: Int) -> ItemPlan {
        let panels = (width + nr - 1) / nr
        var busy = 0, rows = 0
        for n in load where n > 0 { busy += 1; rows += n }
        let units = busy * panels
        guard units > 0, k > 0 else { return ItemPlan(segments: [], starts: [0]) }
        func work(_ ex: Int, _ p: Int) -> Int { load[ex] * min(nr, width - p * nr) * k }
        let total = rows * width * k
        var count = min(WorkItems.itemsPerWorker * max(1, workers), units, minMACs > 0 ? max(1, total / minMACs) : units)
        if count >= workers { count -= count % workers }
        // Each panel goes to the item its work's midpoint falls in (items differ by at most about one panel's work);
        // item numbers only grow along the list, so the plan is built flat (two allocations: calls are microseconds).
        var segments: [Segment] = [], starts: [Int] = []
        segments.reserveCapacity(busy + count); starts.reserveCapacity(count + 1)
        var done = 0, currentItem = -1
        for ex in load.indices where load[ex] > 0 {
            for p in 0..<panels {
                let w = work(ex, p)
                let item = min(count - 1, (2 * done + w) * count / (2 * total))
                done += w
                if item != currentItem {
                    starts.append(segments.count); currentItem = item
                    segments.append(Segment(expert: ex, panels: p..<(p + 1)))
                } else if let last = segments.last, last.expert == ex {
                    segments[segments.count - 1] = Segment(expert: ex, panels: last.panels.lowerBound..<(p + 1))
                } else {
                    segments.append(Segment(expert: ex, panels: p..<(p + 1)))
                }
            }
        }
        starts.append(segments.count)
        return ItemPlan(segments: segments, starts: starts)
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
