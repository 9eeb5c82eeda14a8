import ArgumentParser
import DGHarness
import DGKernels
import DGModels
import DGReport
import DGRuntime
import DGStats

/// `dgperf eval`: accuracy, mask statistics, relative MACs and inference time of a trained weight file.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate a weight file on the test set: accuracy, active fraction, relative MAC, inference time.",
        discussion: """
        Examples:
          dgperf eval results/weights/dg-lowrank32-l0.05.dgw
          dgperf eval weights/moe.dgw --batch 1 --threads 1
        """
    )

    @Argument(help: "Weight file written by `dgperf train`.") var weights: String
    @Option(help: "Folder with the IDX files.") var dataDir: String = Dataset.defaultDirectory
    @Option(help: "Batch size for evaluation and timing.") var batch: Int = 128
    @Option(help: "Worker threads.") var threads: Int = 1
    @Option(help: "Timed forward calls.") var calls: Int = 50
    @Option(help: "Kernel ISA: auto, avx512 or avx2.") var isa: String = "auto"

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be ≥ 1 (got \(batch))") }
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1 (got \(threads))") }
        guard calls >= 1 else { throw ValidationError("--calls must be ≥ 1 (got \(calls))") }
        guard ISAChoice(rawValue: isa) != nil else { throw ValidationError("--isa must be one of auto, avx512, avx2 (got '\(isa)')") }
    }

    func run() throws {
        try requireOptimizedBuild()
        let kernels: KernelSet
        do { kernels = try KernelSet.select(ISAChoice(rawValue: isa)!) } catch { throw ValidationError("\(error)") }
        let engine = GemmEngine(kernels: kernels, executor: ExecutorFactory.make(threads: threads))
        let file: WeightFile, test: Dataset
        do {
            file = try WeightFile.read(path: weights)
            test = try Dataset.load(.test, directory: dataDir)
        } catch { throw ValidationError("\(error)") }
        let spec = file.header.spec
        let model = try ModelFactory.build(file.network, engine: engine, seed: file.header.seed)
        let ev: Evaluation, times: [Double]
        do {
            ev = try Evaluation.run(model, data: test, batch: batch)
            times = try Evaluation.time(model, data: test, batch: batch, calls: calls)
        } catch { throw ValidationError("\(error)") }
        let f = Format.fixed
        var desc = "\(spec.kind.rawValue) dims=\(spec.dims)"
        switch spec.kind {
        case .dg: desc += " gate=\(spec.gate) G=\(spec.granularity) λ=\(file.header.training.lambda) T=\(spec.temperature) tau=\(spec.threshold)"
        case .moe: desc += " experts=\(spec.experts)×\(spec.unitsPerExpert) top-\(spec.topK) capacity=\(spec.capacityFactor)"
        case .dropout: desc += " p=\(spec.dropoutRate)"
        case .random: desc += " r=\(spec.activeFraction)"
        case .dense: break
        }
        print("dgperf eval  \(weights)  (format v\(WeightFile.formatVersion), \(file.header.storage.rawValue))")
        print("  model        \(desc)")
        print("  trained      \(file.header.training.epochs) epochs, \(file.header.training.optimizer.rawValue), seed \(file.header.seed)")
        print("  test accuracy \(f(ev.accuracy, 4))  (\(ev.samples) samples)")
        for (l, s) in ev.layers.enumerated() {
            if spec.kind == .moe || spec.kind == .dense || spec.kind == .dropout {
                print("  layer \(l): active mean \(f(s.meanActive, 3))\(spec.kind == .moe ? " (expert units used per token / hidden)" : "")")
                continue
            }
            print("  layer \(l): active mean \(f(s.meanActive, 3)) std \(f(s.stdActive, 3))  units never active \(s.neverActive)/\(s.units)  always active \(s.alwaysActive)/\(s.units)  on for ≥ half the samples \(s.halfActive)/\(s.units) (\(f(100 * s.halfActivePairShare, 0)) % of active pairs)")
        }
        print("  relative MAC paper \(f(ev.paperRelativeMAC, 3))  net (incl. gate/router) \(f(ev.netRelativeMAC, 3))  executed \(f(ev.executedRelativeMAC, 3))")
        if spec.kind == .moe { print("  dropped tokens \(ev.droppedTokens) (\(f(100 * Double(ev.droppedTokens) / Double(ev.samples), 2))%)") }
        let s = Summary(times)!
        print("  inference batch \(batch), \(threads) thread\(threads == 1 ? "" : "s"), kernel \(kernels.name): min \(f(s.min * 1e3, 3)) ms  median \(f(s.median * 1e3, 3)) ms  p95 \(f(s.p95 * 1e3, 3)) ms  (\(times.count) calls)")
    }
}
