import DGKernels
import DGRuntime

/// One epoch's numbers.
public struct EpochReport: Sendable {
    public var epoch: Int
    public var lambda: Double
    public var loss: Double
    public var trainAccuracy: Double
    public var activeFraction: Double
    public var seconds: Double
    public var gemmSeconds: Double
    /// Time in the optimizer step and in building minibatches (both outside GEMMs).
    public var optimizerSeconds: Double
    public var dataSeconds: Double
    public var droppedTokens: Int
}

/// Minibatch training over a dataset: seeded shuffle each epoch (Fisher–Yates on SplitMix64), the last
/// partial batch included, λ from the config's schedule.
public final class TrainingLoop {
    public let trainer: Trainer
    public let data: Dataset
    private var order: [Int]
    private var shuffleRNG: SplitMix64
    private let xBuf = AlignedBuffer()
    private var yBuf: [Int32]

    public init(trainer: Trainer, data: Dataset) throws {
        let spec = trainer.network.spec
        guard data.features == spec.inputFeatures else {
            throw ModelError.invalidArgument("dataset has \(data.features) features but the model expects \(spec.inputFeatures)")
        }
        guard data.classes <= spec.classes else {
            throw ModelError.invalidArgument("dataset has \(data.classes) classes but the model has \(spec.classes) outputs")
        }
        self.trainer = trainer; self.data = data
        let limit = trainer.config.trainLimit
        order = Array(0..<(limit > 0 ? min(limit, data.count) : data.count))
        shuffleRNG = SplitMix64(seed: trainer.config.seed)
        yBuf = [Int32](repeating: 0, count: trainer.config.batchSize)
    }

    public func runEpoch(_ epoch: Int) throws -> EpochReport {
        let cfg = trainer.config, B = cfg.batchSize, D = data.features
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            order.swapAt(i, Int(shuffleRNG.next() % UInt64(i + 1)))
        }
        let lambda = cfg.lambda(atEpoch: epoch)
        trainer.resetGemmTimer()
        var loss = 0.0, correct = 0, active = 0.0, dropped = 0, batches = 0
        let x = xBuf.reserve(B * D)
        var optNanos: UInt64 = 0, dataNanos: UInt64 = 0
        let t0 = monotonicNanos()
        for start in stride(from: 0, to: order.count, by: B) {
            let n = min(B, order.count - start)
            try yBuf.withUnsafeMutableBufferPointer { y in
                let d0 = monotonicNanos()
                data.gather(order[start..<(start + n)], x: x, y: y.baseAddress!)
                dataNanos += monotonicNanos() - d0
                let r = try trainer.computeGradients(x: x, labels: y.baseAddress!, batch: n, lambda: lambda)
                loss += r.loss * Double(n); correct += r.correct; active += r.activeFraction * Double(n)
                dropped += r.droppedTokens
            }
            let o0 = monotonicNanos()
            trainer.applyUpdate()
            optNanos += monotonicNanos() - o0
            batches += 1
        }
        let seconds = Double(monotonicNanos() - t0) * 1e-9
        let n = Double(order.count)
        return EpochReport(epoch: epoch, lambda: lambda, loss: loss / n, trainAccuracy: Double(correct) / n,
                           activeFraction: active / n, seconds: seconds, gemmSeconds: Double(trainer.gemmNanos) * 1e-9,
                           optimizerSeconds: Double(optNanos) * 1e-9, dataSeconds: Double(dataNanos) * 1e-9, droppedTokens: dropped)
    }
}

/// Accuracy, mask statistics and relative MACs of an inference model over a dataset.
public struct Evaluation: Sendable {
    public struct LayerStats: Sendable {
        public var meanActive: Double
        /// Standard deviation over samples of the per-sample active fraction.
        public var stdActive: Double
        public var neverActive: Int
        public var alwaysActive: Int
        public var units: Int
        /// Units on for at least half of the samples, and their share of the active (sample, unit) pairs: how skewed
        /// the gates are (per-sample `hotColdSplit` runs such units as one GEMM over the batch).
        public var halfActive = 0
        public var halfActivePairShare = 0.0
    }
    public var samples: Int
    public var accuracy: Double
    public var layers: [LayerStats]
    public var meanActive: Double
    public var cost: CostBreakdown
    public var dense: KernelCost
    public var droppedTokens: Int
    /// useful / dense (the paper's relative MAC).
    public var paperRelativeMAC: Double { Double(cost.useful.macs) / Double(max(dense.macs, 1)) }
    /// (useful + gate/router overhead) / dense.
    public var netRelativeMAC: Double { Double(cost.useful.macs + cost.overhead.macs) / Double(max(dense.macs, 1)) }
    /// Everything executed (including masked-away work) / dense.
    public var executedRelativeMAC: Double { Double(cost.total.macs) / Double(max(dense.macs, 1)) }

    /// Runs `model` over `data` in batches of `batch`.
    public static func run(_ model: InferenceModel, data: Dataset, batch: Int) throws -> Evaluation {
        let spec = model.spec
        guard data.features == spec.inputFeatures else {
            throw ModelError.invalidArgument("dataset has \(data.features) features but the model expects \(spec.inputFeatures)")
        }
        let masked = model as? MaskedMLP
        masked?.recordMasks = true
        defer { masked?.recordMasks = false }
        let L = spec.hidden.count
        var unitCounts = spec.hidden.map { [Int](repeating: 0, count: $0) }
        var perSample = Array(repeating: [Double](), count: L)
        let x = AlignedBuffer(), out = AlignedBuffer()
        var y = [Int32](repeating: 0, count: batch)
        var correct = 0, dropped = 0
        var cost = CostBreakdown.zero, dense = KernelCost.zero
        var activeSum = 0.0
        let all = Array(0..<data.count)
        for start in stride(from: 0, to: data.count, by: batch) {
            let n = min(batch, data.count - start)
            let xp = x.reserve(n * spec.inputFeatures), op = out.reserve(n * spec.classes)
            y.withUnsafeMutableBufferPointer { data.gather(all[start..<(start + n)], x: xp, y: $0.baseAddress!) }
            let r = try model.forward(input: xp, batch: n, output: op)
            cost += r.cost; dense = dense + model.denseCost(batch: n)
            activeSum += r.activeFraction * Double(n)
            dropped += Int(r.notes["droppedTokens"] ?? "0") ?? 0
            for i in 0..<n {
                var arg = 0
                for j in 1..<spec.classes where op[i * spec.classes + j] > op[i * spec.classes + arg] { arg = j }
                if arg == Int(y[i]) { correct += 1 }
            }
            if let m = masked {
                for l in 0..<L {
                    let bits = m.lastGateBits[l], G = m.gates(layer: l), gr = m.granularity, H = spec.hidden[l]
                    for i in 0..<n {
                        var on = 0
                        for g in 0..<G where bits[i * G + g] != 0 {
                            for j in (g * gr)..<min(H, (g + 1) * gr) { unitCounts[l][j] += 1; on += 1 }
                        }
                        perSample[l].append(Double(on) / Double(H))
                    }
                }
            }
        }
        var layers: [LayerStats] = []
        for l in 0..<L {
            let v = perSample[l]
            let mean = v.isEmpty ? 1 : v.reduce(0, +) / Double(v.count)
            let std = v.isEmpty ? 0 : (v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(v.count)).squareRoot()
            let counts = unitCounts[l]
            var stats = LayerStats(meanActive: masked == nil ? activeSum / Double(data.count) : mean, stdActive: std,
                                   neverActive: masked == nil ? 0 : counts.filter { $0 == 0 }.count,
                                   alwaysActive: masked == nil ? spec.hidden[l] : counts.filter { $0 == data.count }.count,
                                   units: spec.hidden[l])
            if masked != nil {
                let half = counts.filter { 2 * $0 >= data.count }
                stats.halfActive = half.count
                stats.halfActivePairShare = Double(half.reduce(0, +)) / Double(max(1, counts.reduce(0, +)))
            }
            layers.append(stats)
        }
        return Evaluation(samples: data.count, accuracy: Double(correct) / Double(data.count), layers: layers,
                          meanActive: activeSum / Double(data.count), cost: cost, dense: dense, droppedTokens: dropped)
    }

    /// Seconds per `forward` call at `batch` over the first batches of `data` (after a warm-up pass).
    public static func time(_ model: InferenceModel, data: Dataset, batch: Int, calls: Int) throws -> [Double] {
        let spec = model.spec
        let batches = max(1, min(data.count / batch, 16))
        let x = AlignedBuffer(), out = AlignedBuffer()
        let xp = x.reserve(batches * batch * spec.inputFeatures), op = out.reserve(batch * spec.classes)
        var y = [Int32](repeating: 0, count: batches * batch)
        let n = min(batches * batch, data.count)
        y.withUnsafeMutableBufferPointer { data.gather(Array(0..<n)[0..<n], x: xp, y: $0.baseAddress!) }
        let b = min(batch, n)
        for i in 0..<batches { _ = try model.forward(input: xp + (i * b % n) * spec.inputFeatures, batch: b, output: op) }
        var times: [Double] = []
        for c in 0..<calls {
            let i = c % batches
            let t0 = monotonicNanos()
            _ = try model.forward(input: xp + i * b * spec.inputFeatures, batch: b, output: op)
            times.append(Double(monotonicNanos() - t0) * 1e-9)
        }
        return times
    }
}
