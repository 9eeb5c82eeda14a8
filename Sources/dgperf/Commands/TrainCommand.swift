import ArgumentParser
import DGHarness
import DGKernels
import DGModels
import DGReport
import DGRuntime

/// `dgperf train`: train one model family on Fashion-MNIST (or MNIST) and write a weight file.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a dense, dropout, random-control, DynamicGate or Switch-MoE MLP and save its weights.",
        discussion: """
        Examples:
          dgperf train --model dense --epochs 10 --out weights/dense.dgw
          dgperf train --model dg --gate lowrank:32 --lambda 0.05 --epochs 10 --out weights/dg.dgw
          dgperf train --model moe --experts 8 --top-k 2 --out weights/moe.dgw
        """
    )

    @Option(help: "Model family: dense, dropout, random, dg, moe.") var model: String
    @Option(help: "Hidden widths, comma-separated.") var hidden: String = "512"
    @Option(help: "Gate predictor (dg): static, full, lowrank:R, block:G.") var gate: String = "lowrank:32"
    @Option(help: "Units per gate G (dg; block:G sets it too).") var granularity: Int = 1
    @Option(help: "Budget weight λ in CE + λ·mean(p) (dg).") var lambda: Double = 0.01
    @Option(help: "Gate temperature T (dg).") var temperature: Double = 1
    @Option(help: "Mask threshold tau: gate on when p > tau (dg).") var tau: Double = 0.5
    @Option(help: "At least this many gates on per sample and layer (dg).") var minKeep: Int = 0
    @Option(help: "Epochs with λ = 0 before the budget starts (dg).") var warmupEpochs: Int = 1
    @Option(help: "λ schedule after warm-up: linear or constant (dg).") var lambdaSchedule: String = "linear"
    @Option(help: "Epochs of the linear λ ramp (dg).") var rampEpochs: Int = 2
    @Option(help: "Drop probability (dropout).") var dropout: Double = 0.2
    @Option(help: "Active fraction of the random control (random).") var active: Double = 0.3
    @Option(help: "Experts (moe).") var experts: Int = 8
    @Option(help: "Experts per token, 1 or 2 (moe).") var topK: Int = 2
    @Option(help: "Capacity factor (moe).") var capacity: Double = 1.25
    @Option(help: "Hidden units per expert; 0 = hidden / experts (moe).") var expertHidden: Int = 0
    @Option(help: "Load-balancing loss weight (moe).") var lbWeight: Double = 0.01
    @Option(help: "Router z-loss weight (moe).") var zWeight: Double = 1e-3
    @Option(help: "Epochs.") var epochs: Int = 10
    @Option(help: "Minibatch size.") var batch: Int = 128
    @Option(help: "Learning rate.") var lr: Double = 1e-3
    @Option(help: "Optimizer: adam or sgd (with momentum).") var optimizer: String = "adam"
    @Option(help: "SGD momentum.") var momentum: Double = 0.9
    @Option(help: "Seed for initialisation, shuffling and masks.") var seed: UInt64 = 1
    @Option(help: "Worker threads.") var threads: Int = 2
    @Option(help: "Use only the first N training samples (0 = all).") var trainLimit: Int = 0
    @Option(help: "Folder with the IDX files (Fashion-MNIST or MNIST layout).") var dataDir: String = Dataset.defaultDirectory
    @Option(help: "Weight storage: f32 or f16 (half the size).") var storage: String = "f32"
    @Option(help: "Kernel ISA: auto, avx512 or avx2.") var isa: String = "auto"
    @Option(help: "Output weight file (.dgw).") var out: String

    func validate() throws {
        guard ModelKind(rawValue: model) != nil else {
            throw ValidationError("--model must be one of dense, dropout, random, dg, moe (got '\(model)')")
        }
        guard TrainingConfig.Optimizer(rawValue: optimizer) != nil else { throw ValidationError("--optimizer must be adam or sgd (got '\(optimizer)')") }
        guard TrainingConfig.LambdaSchedule(rawValue: lambdaSchedule) != nil else {
            throw ValidationError("--lambda-schedule must be linear or constant (got '\(lambdaSchedule)')")
        }
        guard WeightFile.Storage(rawValue: storage) != nil else { throw ValidationError("--storage must be f32 or f16 (got '\(storage)')") }
        guard ISAChoice(rawValue: isa) != nil else { throw ValidationError("--isa must be one of auto, avx512, avx2 (got '\(isa)')") }
        guard parsedHidden != nil else { throw ValidationError("--hidden must be comma-separated positive integers, e.g. 512 or 256,256 (got '\(hidden)')") }
    }

    var parsedHidden: [Int]? {
        let v = hidden.split(separator: ",").map { Int($0.filter { $0 != " " }) }
        guard !v.isEmpty, v.allSatisfy({ ($0 ?? 0) >= 1 }) else { return nil }
        return v.map { $0! }
    }

    func run() throws {
        try requireOptimizedBuild()
        let kernels: KernelSet
        do { kernels = try KernelSet.select(ISAChoice(rawValue: isa)!) } catch { throw ValidationError("\(error)") }
        let engine = GemmEngine(kernels: kernels, executor: ExecutorFactory.make(threads: threads))
        let kind = ModelKind(rawValue: model)!
        var gateString = gate, g = granularity
        if kind == .dg, let parsed = try? GatePredictor.parse(gate, granularity: granularity) { g = parsed.1; if gate.hasPrefix("block") { gateString = gate } }
        let spec = ModelSpec(kind: kind, hidden: parsedHidden!, activeFraction: kind == .random ? active : 1, granularity: g,
                             gate: gateString, experts: experts, topK: topK, capacityFactor: capacity, temperature: temperature,
                             threshold: tau, minKeep: minKeep, dropoutRate: dropout, expertHidden: expertHidden)
        var cfg = TrainingConfig()
        cfg.epochs = epochs; cfg.batchSize = batch; cfg.learningRate = lr; cfg.optimizer = .init(rawValue: optimizer)!
        cfg.momentum = momentum; cfg.seed = seed; cfg.threads = threads; cfg.lambda = kind == .dg ? lambda : 0
        cfg.warmupEpochs = warmupEpochs; cfg.lambdaSchedule = .init(rawValue: lambdaSchedule)!; cfg.rampEpochs = rampEpochs
        cfg.loadBalanceWeight = lbWeight; cfg.zLossWeight = zWeight; cfg.trainLimit = trainLimit

        // Values, gradients and Adam's two moments are 16 bytes per parameter, the estimate's own figure.
        let shape = spec.dims.map(String.init).joined(separator: "→")
        if let message = MemoryCheck.problem(bytes: spec.estimatedMemoryBytes(batch: batch),
                                             what: "training the \(kind.rawValue) model \(shape) (\(spec.parameterCount) parameters with gradients and optimiser state)",
                                             fix: "use smaller --hidden") {
            throw ValidationError(message)
        }
        let network: Network, trainer: Trainer
        do {
            network = try Network(spec: spec, seed: seed)
            trainer = try Trainer(network: network, engine: engine, config: cfg)
        } catch { throw ValidationError("\(error)") }
        let trainSet: Dataset, testSet: Dataset
        do {
            trainSet = try Dataset.load(.train, directory: dataDir)
            testSet = try Dataset.load(.test, directory: dataDir)
        } catch { throw ValidationError("\(error)") }
        let loop: TrainingLoop
        do { loop = try TrainingLoop(trainer: trainer, data: trainSet) } catch { throw ValidationError("\(error)") }

        let f = Format.fixed
        print("dgperf train  model=\(kind.rawValue)\(kind == .dg ? " gate=\(gateString) G=\(g) λ=\(cfg.lambda) T=\(temperature) tau=\(tau)" : "")  dims=\(spec.dims)  params=\(network.parameterCount)")
        print("  \(cfg.optimizer.rawValue) lr=\(lr) batch=\(batch) epochs=\(epochs) seed=\(seed) threads=\(threads) kernel=\(kernels.name) train=\(loop.data.count) samples")
        print("  epoch   λ        loss     train-acc  active   seconds  gemm%  optim%  data%")
        var reports: [EpochReport] = []
        for e in 0..<epochs {
            let r = try loop.runEpoch(e)
            reports.append(r)
            print("  \(Format.pad(String(e + 1), 5))  \(Format.padRight(f(r.lambda, 4), 7))  \(f(r.loss, 4))   \(f(r.trainAccuracy, 4))     \(f(r.activeFraction, 3))    \(f(r.seconds, 3))    \(f(100 * r.gemmSeconds / r.seconds, 1))   \(f(100 * r.optimizerSeconds / r.seconds, 1))    \(f(100 * r.dataSeconds / r.seconds, 1))")
        }
        let inference = try ModelFactory.build(network, engine: engine, seed: seed)
        let ev = try Evaluation.run(inference, data: testSet, batch: 256)
        let fastest = reports.min { $0.seconds < $1.seconds }!
        let metrics = TrainingMetrics(testAccuracy: ev.accuracy, trainLoss: reports.last!.loss, meanActiveFraction: ev.meanActive,
                                      epochSeconds: reports.map(\.seconds), gemmFraction: fastest.gemmSeconds / fastest.seconds,
                                      droppedTokenFraction: Double(ev.droppedTokens) / Double(ev.samples))
        do {
            try WeightFile.write(network: network, training: cfg, metrics: metrics, storage: .init(rawValue: storage)!, seed: seed, to: out)
        } catch { throw ValidationError("\(error)") }
        print("  test accuracy \(f(ev.accuracy, 4))  mean active \(f(ev.meanActive, 3))  paper rel. MAC \(f(ev.paperRelativeMAC, 3))  net rel. MAC \(f(ev.netRelativeMAC, 3))")
        print("  epoch time min \(f(fastest.seconds, 3)) s (epoch \(fastest.epoch + 1)), \(f(100 * (1 - metrics.gemmFraction), 1))% outside GEMMs")
        print("  wrote \(out)")
    }
}
