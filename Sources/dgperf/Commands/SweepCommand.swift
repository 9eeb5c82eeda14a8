import ArgumentParser
import DGHarness
import DGKernels
import DGReport
import DGRuntime
import Glibc

/// Sweep flags, shared by `dgperf --sweep` and `dgperf sweep`. Values stay strings here: DGHarness
/// validates them all (one message naming the flag and the fix) before anything is written.
struct SweepOptions: ParsableArguments {
    @Option(help: "Preset: quick (~1 min), default (~5 min), full (paper grid, hours, resumable).") var preset: String?
    @Option(help: "JSON spec file (fields of SweepSpec over a preset, e.g. {\"preset\":\"quick\",\"batches\":[1,64]}).") var spec: String?
    @Option(help: "Models: dense,dropout,dg,random,moe.") var models: String?
    @Option(help: "Hidden widths, e.g. 512,2048 (each repeated --layers times) or 1024/512 for explicit layers.") var hidden: String?
    @Option(help: "Hidden layers per model when --hidden gives one width (default 1: 784→H→10, as in the paper).") var layers: Int?
    @Option(help: "Batch sizes, e.g. 1,32,256.") var batch: String?
    @Option(help: "Active fractions r of gated units, 0 < r ≤ 1, e.g. 0.5,0.25,0.1.") var active: String?
    @Option(help: "Sparsities s = 1 − r, 0 ≤ s < 1 (instead of --active), e.g. 0.5,0.9.") var sparsity: String?
    @Option(help: "Units per gate G, e.g. 1,16,64.") var granularity: String?
    @Option(help: "Mask kinds: per-sample,shared.") var mask: String?
    @Option(help: "Worker thread counts, e.g. 1,2.") var threads: String?
    @Flag(help: "Flush caches before every sample (default: warm caches).") var cold = false
    @Option(help: "Seed for weights, masks and inputs.") var seed: String?
    @Option(help: "Kernel ISA: auto, avx512, avx2.") var isa: String?
    @Option(help: "Minimum repetitions per cell.") var minReps: Int?
    @Option(help: "Maximum repetitions per cell.") var maxReps: Int?
    @Option(help: "Timed seconds per cell before stopping (after --min-reps).") var budget: String?
    @Option(help: "Stop a cell once the 95% CI of the median is within ± this (e.g. 0.02 or 2%).") var targetCi: String?
    @Option(help: "Time trained models from this directory (written by `dgperf train`) instead of synthetic masks.") var weights: String?
    @Option(help: "Output directory (default results/<timestamp>-<host>).") var output: String?
    @Flag(help: "Continue an interrupted sweep (--output DIR, or the newest unfinished one under results/).") var resume = false
    @Option(help: "Run slice K of N (1-based), e.g. 2/4; join the slices with `dgperf merge`.") var shard: String?
    @Option(help: "Only run the cell keys listed in this file (one per line), plus their dense references.") var cellsFrom: String?
    @Flag(help: "No progress output and no table on stdout (CI).") var quiet = false
    @Option(help: "Also run every cell in these frameworks in the same run: numpy or numpy,torch (Python; skipped with one line when missing).")
    var peers: String?

    var request: SweepRequest {
        var r = SweepRequest()
        r.preset = preset; r.specFile = spec; r.models = models; r.hidden = hidden; r.layers = layers; r.batch = batch
        r.active = active; r.sparsity = sparsity; r.granularity = granularity; r.mask = mask; r.threads = threads
        r.cold = cold; r.seed = seed; r.isa = isa; r.minReps = minReps; r.maxReps = maxReps; r.budget = budget
        r.targetCI = targetCi; r.weights = weights; r.output = output; r.resume = resume; r.shard = shard
        r.cellsFrom = cellsFrom
        return r
    }
}

/// `dgperf sweep` (same as `dgperf --sweep`).
struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Measure wall time and FLOPs over models × batch × active fraction × granularity × threads.",
        discussion: SweepRun.examples
    )
    @Flag(help: "Run the sweep (how `dgperf --sweep` reaches this command).") var sweep = false
    @OptionGroup var options: SweepOptions
    func run() throws {
        // `dgperf` alone (default subcommand, no --sweep) shows the overview instead of starting a long run.
        guard sweep || CommandLine.arguments.dropFirst().first == "sweep" else { throw CleanExit.helpRequest(DGPerf.self) }
        try SweepRun.run(options)
    }
}

enum SweepRun {
    static let examples = """
    Examples:
      dgperf --sweep                                  # default preset (~5 min on 2 cores)
      dgperf --sweep --preset quick --quiet           # CI
      dgperf sweep --models dense,dg --batch 1,32,256 --active 0.5,0.25,0.1 --granularity 1,16 --threads 1,2
      dgperf sweep --sparsity 0.5,0.9 --hidden 2048 --layers 3
      dgperf sweep --preset full --shard 1/4 --output results/full-1   # then: dgperf merge results/full-*
      dgperf sweep --resume                           # continue the newest interrupted sweep
      dgperf --sweep --preset quick --peers numpy,torch   # same cells in numpy / PyTorch, side by side
    Results: <output>/results.json, results.csv, table.md. Then: dgperf table / plot / compare.
    Ctrl-C writes what finished; --resume continues. DGPERF_DISABLE_SPARSE=1 runs gated models densely (demo of a regression).
    """

    static func run(_ options: SweepOptions) throws {
        try reportingHarnessErrors {
            try BuildIdentity.requireOptimized()
            let resolved = try options.request.resolve()
            let peerImpls = try PeerSelection.parse(options.peers)
            let kernels: KernelSet
            do { kernels = try KernelSet.select(ISAChoice(rawValue: resolved.spec.isa) ?? .auto) } catch {
                throw HarnessError(.software, "\(error)")
            }
            let dir = resolved.outputDirectory
            try AtomicFile.makeWritableDirectory(dir)
            let store = ResultsStore(directory: dir, sidecars: [CSVReporter.sidecar])
            let env = EnvironmentInfo.current(kernels: kernels, dgperfVersion: DGPerfVersion.string)
            let progress = ProgressDisplay.automatic(quiet: options.quiet)
            if !options.quiet {
                printErr("dgperf sweep → \(dir)  (preset \(resolved.spec.preset); kernel \(kernels.name); build \(env.buildConfiguration), measured code optimised: \(env.measuredCodeOptimized))")
                printErr("measuring FMA peak …")
            }
            let measurer = KernelCellMeasurer(kernels: kernels, environment: environmentVariables())
            if measurer.sparseDisabled { printErr("DGPERF_DISABLE_SPARSE is set: gated models run through the dense path (deliberate slowdown)") }
            let runner = SweepRunner(spec: resolved.spec, shard: resolved.shard, cellFilter: resolved.cellFilter,
                                     store: store, measurer: measurer, observer: progress)
            var peers: PythonPeers?
            if !peerImpls.isEmpty {
                let p = PythonPeers(requested: peerImpls, kernels: kernels, spec: resolved.spec, warn: printErr)
                if !p.implementations.isEmpty {
                    peers = p
                    runner.peers = p
                    if !options.quiet { for (impl, blas) in p.blasSummary.sorted(by: { $0.key.rawValue < $1.key.rawValue }) where p.implementations.contains(impl) { printErr("peer \(impl.rawValue): \(blas)") } }
                }
            }
            defer { peers?.finish() }
            Interrupt.install()
            let (outcome, results) = try runner.run(environment: env, existing: resolved.existing)
            let table = TableReporter(format: .markdown)
            try AtomicFile.write(table.render(results), to: dir + "/" + table.fileName)
            switch outcome {
            case .completed:
                if !options.quiet { print(table.render(results)) }
                let failed = results.cells.filter { $0.status == .failed }
                let figures = (try? writeFigures(results, to: dir, png: false, verbose: false))?.count ?? 0
                printErr("wrote \(store.resultsPath), results.csv, table.md, \(figures) SVG plots (\(results.cells.count) cells\(failed.isEmpty ? "" : ", \(failed.count) FAILED"))")
                printErr("next: dgperf table \(store.resultsPath) --format latex  ·  dgperf plot \(store.resultsPath) (adds PNGs)  ·  dgperf compare BASE.json \(store.resultsPath)")
                if !failed.isEmpty { throw ExitCode(1) }
            case .interrupted(let done, let total):
                printErr("\ninterrupted: \(done) of \(total) cells are in \(store.resultsPath); continue with: dgperf sweep --resume --output \(dir) (and the same flags)")
                throw ExitCode(130)
            }
        }
    }
}

/// Prints a HarnessError as one line on stderr and exits with its code.
func reportingHarnessErrors(_ body: () throws -> Void) throws {
    do { try body() } catch let e as HarnessError {
        printErr("dgperf: error: \(e.message)")
        throw ExitCode(e.exitCode)
    }
}

/// One line on stderr, after flushing stdout so the two never interleave mid-line.
func printErr(_ s: String) { printStandardError(s) }

func environmentVariables() -> [String: String] {
    var out: [String: String] = [:]
    for name in ["DGPERF_DISABLE_SPARSE"] {
        if let v = getenv(name) { out[name] = String(decoding: UnsafeRawBufferPointer(start: v, count: strlen(v)), as: UTF8.self) }
    }
    return out
}
