import ArgumentParser
import DGHarness
import DGKernels
import DGModels
import DGReport
import DGRuntime

/// `dgperf profile`: where one forward call's time goes, per layer and phase, against measured limits.
struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Per-layer, per-phase time, MACs, bytes, GFLOP/s and fraction of the measured peak of one forward call.",
        discussion: """
        Phases: gate (gate predictor / router), mask (masks, routing), pack (operand packing incl. gathers),
        gemm (loop nest + micro-kernel, fused bias/ReLU), gather (output zeroing/scatter), activation (unfused),
        combine (MoE), other (bookkeeping). Profiled and unprofiled calls are interleaved; the instrumentation's
        overhead is printed. Machine limits come from `dgperf peak` (cached per machine).

        Examples:
          dgperf profile --model dg --batch 256 --active 0.1
          dgperf profile --model dg --batch 256 --active 0.1 --granularity 32 --mask shared --threads 2
          dgperf profile --weights results/weights/dg-lowrank32-l0.05.dgw --batch 128 --output prof.json --roofline roof.svg
          dgperf profile --model moe --batch 64 --json > prof.json
        """
    )

    @Option(help: "Model: dense, dropout, dg, random, moe.") var model: String = "dg"
    @Option(help: "Batch size.") var batch: Int = 256
    @Option(help: "Active fraction r of gated units, 0 < r ≤ 1 (dg, random).") var active: Double = 0.1
    @Option(help: "Hidden widths, e.g. 512 or 1024,512.") var hidden: String = "512"
    @Option(help: "Units per gate G.") var granularity: Int = 1
    @Option(help: "Mask kind: per-sample or shared.") var mask: String = "per-sample"
    @Option(help: "Gate predictor (dg): static, full, lowrank:R, block:G.") var gate: String = "lowrank:32"
    @Option(help: "Experts (moe).") var experts: Int = 8
    @Option(help: "Worker threads (pinned pool).") var threads: Int = 1
    @Option(help: "Trained weights (.dgw); the model then comes from the file and --model/--hidden/… are ignored.") var weights: String?
    @Option(help: "Timed samples per mode (profiled and unprofiled, interleaved).") var repetitions: Int = 31
    @Option(help: "Write the JSON report (schema dgperf.profile/1) to this file.") var output: String?
    @Option(help: "Write a roofline SVG of the profiled phases to this file.") var roofline: String?
    @Flag(help: "Print the JSON report to stdout instead of the table.") var json = false
    @Flag(help: "Measure the machine limits again instead of using the cache.") var refreshLimits = false
    @Option(help: "Kernel ISA: auto, avx512 or avx2.") var isa: String = "auto"
    @Option(help: "Seed for synthetic weights, masks and inputs.") var seed: UInt64 = 1

    func validate() throws {
        guard ModelKind(rawValue: model) != nil else { throw ValidationError("--model must be one of dense, dropout, dg, random, moe (got '\(model)')") }
        guard MaskKind(rawValue: mask) != nil else { throw ValidationError("--mask must be per-sample or shared (got '\(mask)')") }
        guard ISAChoice(rawValue: isa) != nil else { throw ValidationError("--isa must be one of auto, avx512, avx2 (got '\(isa)')") }
        guard parsedHidden() != nil else { throw ValidationError("--hidden must be positive widths separated by commas, e.g. 512 or 1024,512 (got '\(hidden)')") }
        guard batch >= 1 else { throw ValidationError("--batch must be ≥ 1 (got \(batch))") }
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1 (got \(threads))") }
        guard repetitions >= 3 else { throw ValidationError("--repetitions must be ≥ 3 (got \(repetitions))") }
    }

    func parsedHidden() -> [Int]? {
        let parts = hidden.split(separator: ",").map { Int($0.trimmingPrefix(" ")) }
        guard !parts.isEmpty, parts.allSatisfy({ ($0 ?? 0) >= 1 }) else { return nil }
        return parts.map { $0! }
    }

    func run() throws {
        try requireOptimizedBuild()
        let kernels: KernelSet
        do { kernels = try KernelSet.select(ISAChoice(rawValue: isa)!) } catch { throw ValidationError("\(error)") }
        try reportingHarnessErrors {
            let kind = ModelKind(rawValue: model)!
            let spec = ModelSpec(kind: kind, hidden: parsedHidden()!, activeFraction: kind == .dg || kind == .random ? active : 1,
                                 granularity: granularity, maskKind: MaskKind(rawValue: mask)!, gate: gate, experts: experts)
            let request = ProfileRequest(spec: spec, batch: batch, threads: threads, weightsPath: weights,
                                         repetitions: repetitions, seed: seed)
            try request.validate()
            // Check outputs before measuring anything (no partial outputs, no wasted minutes).
            for path in [output, roofline].compactMap({ $0 }) { try ProfileCommand.checkWritable(path) }
            let limits = MachineLimitsCache.obtain(kernels: kernels, refresh: refreshLimits, log: printErr)
            let measurement = try ProfileRunner.measure(request, kernels: kernels)
            let report = ProfileAnalysis.report(measurement, request: request, limits: limits,
                                                environment: EnvironmentInfo.current(kernels: kernels, dgperfVersion: DGPerfVersion.string))
            if report.counters.hardware.hasPrefix("unsupported") && json {
                printErr("hardware counters: \(report.counters.hardware); using \(report.counters.softwareSource)")
            }
            if let output { try AtomicFile.write(report.encoded(), to: output); printErr("wrote \(output)") }
            if let roofline { try AtomicFile.write(RooflinePlot.svg(report), to: roofline); printErr("wrote \(roofline)") }
            print(json ? report.encoded() : ProfileTable.render(report), terminator: "")
        }
    }

    /// The file's directory must exist and be writable.
    static func checkWritable(_ path: String) throws {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        let dir = parts.count > 1 ? parts.dropLast().joined(separator: "/") : "."
        guard AtomicFile.isDirectory(dir.isEmpty ? "/" : dir) else {
            throw HarnessError(.cannotCreate, "cannot write '\(path)': directory '\(dir)' does not exist; create it or choose another path")
        }
        guard !AtomicFile.isDirectory(path) else {
            throw HarnessError(.cannotCreate, "cannot write '\(path)': it is a directory; pass a file name")
        }
        try AtomicFile.makeWritableDirectory(dir.isEmpty ? "/" : dir)
    }
}
