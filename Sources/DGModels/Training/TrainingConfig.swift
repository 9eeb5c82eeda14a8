/// How a model is trained; stored in the weight file next to the model spec.
public struct TrainingConfig: Codable, Equatable, Sendable {
    public enum Optimizer: String, Codable, Sendable { case adam, sgd }
    public enum LambdaSchedule: String, Codable, Sendable { case linear, constant }

    public var epochs: Int = 10
    public var batchSize: Int = 128
    public var learningRate: Double = 1e-3
    public var optimizer: Optimizer = .adam
    /// SGD momentum (SGD only).
    public var momentum: Double = 0.9
    public var seed: UInt64 = 1
    public var threads: Int = 1
    /// Budget weight λ in CE + λ·mean(p) (dg).
    public var lambda: Double = 0
    /// Epochs with λ = 0 before the budget starts (dg).
    public var warmupEpochs: Int = 0
    /// After warm-up: `linear` ramps λ up over `rampEpochs`, `constant` applies it at once.
    public var lambdaSchedule: LambdaSchedule = .constant
    public var rampEpochs: Int = 1
    /// Switch-MoE auxiliary losses.
    public var loadBalanceWeight: Double = 0.01
    public var zLossWeight: Double = 1e-3
    /// Use only the first N training samples (0 = all); for quick runs.
    public var trainLimit: Int = 0

    public init() {}

    /// λ in effect during `epoch` (0-based).
    public func lambda(atEpoch epoch: Int) -> Double {
        guard epoch >= warmupEpochs else { return 0 }
        switch lambdaSchedule {
        case .constant: return lambda
        case .linear: return lambda * min(1, Double(epoch - warmupEpochs + 1) / Double(max(rampEpochs, 1)))
        }
    }

    public func validate() throws {
        func bad(_ s: String) -> ModelError { .invalidArgument(s) }
        guard epochs >= 1 else { throw bad("--epochs must be ≥ 1 (got \(epochs))") }
        guard batchSize >= 1 else { throw bad("--batch must be ≥ 1 (got \(batchSize))") }
        guard learningRate > 0, learningRate.isFinite else { throw bad("--lr must be > 0 (got \(learningRate))") }
        guard momentum >= 0, momentum < 1 else { throw bad("--momentum must be in [0, 1) (got \(momentum))") }
        guard threads >= 1 else { throw bad("--threads must be ≥ 1 (got \(threads))") }
        guard lambda >= 0 else { throw bad("--lambda must be ≥ 0 (got \(lambda))") }
        guard warmupEpochs >= 0, rampEpochs >= 1 else { throw bad("--warmup-epochs must be ≥ 0 and --ramp-epochs ≥ 1") }
        guard loadBalanceWeight >= 0, zLossWeight >= 0 else { throw bad("--lb-weight and --z-weight must be ≥ 0") }
        guard trainLimit >= 0 else { throw bad("--train-limit must be ≥ 0 (got \(trainLimit))") }
    }
}

/// Results recorded after training (in the weight file header).
public struct TrainingMetrics: Codable, Equatable, Sendable {
    public var testAccuracy: Double
    public var trainLoss: Double
    public var meanActiveFraction: Double
    public var epochSeconds: [Double]
    public var gemmFraction: Double
    public var droppedTokenFraction: Double
    public init(testAccuracy: Double = 0, trainLoss: Double = 0, meanActiveFraction: Double = 1, epochSeconds: [Double] = [],
                gemmFraction: Double = 0, droppedTokenFraction: Double = 0) {
        self.testAccuracy = testAccuracy; self.trainLoss = trainLoss; self.meanActiveFraction = meanActiveFraction
        self.epochSeconds = epochSeconds; self.gemmFraction = gemmFraction; self.droppedTokenFraction = droppedTokenFraction
    }
}
