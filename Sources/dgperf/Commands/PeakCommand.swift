import ArgumentParser
import DGHarness
import DGKernels
import DGReport

/// `dgperf peak`: the machine's measured limits (FMA peak, memory and cache bandwidth), cached per machine.
struct PeakCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peak",
        abstract: "Measure (or show the cached) FMA peak per core and on all cores, STREAM copy/triad DRAM bandwidth and cache-level bandwidth.",
        discussion: """
        The limits are cached per machine fingerprint in $XDG_CACHE_HOME/dgperf (else ~/.cache/dgperf);
        an unwritable cache only means measuring again. `dgperf profile` and its roofline use them.

        Examples:
          dgperf peak
          dgperf peak --refresh
          dgperf peak --json
        """
    )
    @Flag(help: "Measure again even when cached.") var refresh = false
    @Flag(help: "Print JSON (schema dgperf.limits/1).") var json = false
    @Option(help: "Kernel ISA: auto, avx512 or avx2.") var isa: String = "auto"

    func validate() throws {
        guard ISAChoice(rawValue: isa) != nil else { throw ValidationError("--isa must be one of auto, avx512, avx2 (got '\(isa)')") }
    }

    func run() throws {
        try requireOptimizedBuild()
        let kernels: KernelSet
        do { kernels = try KernelSet.select(ISAChoice(rawValue: isa)!) } catch { throw ValidationError("\(error)") }
        let limits = MachineLimitsCache.obtain(kernels: kernels, refresh: refresh, log: printErr)
        if json { print(MachineLimitsCache.encode(limits), terminator: ""); return }
        print(PeakCommand.render(limits), terminator: "")
    }

    static func render(_ l: MachineLimits) -> String {
        let f = { (x: Double) in Format.fixed(x, 1) }
        var out = "dgperf peak  \(l.cpuModel)  kernel \(l.kernel)  \(l.cores) cores  (fingerprint \(l.fingerprint), measured \(l.measuredAt) in \(f(l.measurementSeconds)) s)\n"
        out += "FMA peak:  \(f(l.fmaPeakGflopsPerCore)) GFLOP/s per core, \(f(l.fmaPeakGflopsAllCores)) GFLOP/s on all \(l.cores) cores "
            + "(\(Format.fixed(l.fmaPeakGflopsAllCores / max(l.fmaPeakGflopsPerCore * Double(l.cores), 1e-9) * 100, 0))% of per-core × cores)\n"
        if !l.allCoresMeasurementIsClean {
            out += "note: the all-cores peak is below 80% of cores × per-core: other load shared the cores while measuring, so roofs use per-core × threads; `dgperf peak --refresh` on a quiet machine\n"
        }
        out += "bandwidth (best of trials, STREAM byte counts):\n"
        out += "  level  kernel  threads  working set   GB/s\n"
        for b in l.bandwidth {
            out += "  " + Format.padRight(b.level, 5) + "  " + Format.padRight(b.kernel, 6) + "  " + Format.pad(String(b.threads), 7)
                + "  " + Format.pad(bytes(b.workingSetBytes), 11) + "  " + Format.pad(f(b.gigabytesPerSecond), 6) + "\n"
        }
        let bw = l.memoryBandwidth(threads: l.cores)
        out += "ridge point (all cores): \(f(bw > 0 ? l.fmaPeakGflopsAllCores / bw : 0)) FLOP/byte; "
            + "1 core: \(f(l.memoryBandwidth(threads: 1) > 0 ? l.fmaPeakGflopsPerCore / l.memoryBandwidth(threads: 1) : 0)) FLOP/byte\n"
        return out
    }

    static func bytes(_ n: Int) -> String {
        if n >= 1 << 20 { return Format.fixed(Double(n) / Double(1 << 20), 1) + " MiB" }
        if n >= 1 << 10 { return Format.fixed(Double(n) / Double(1 << 10), 1) + " KiB" }
        return "\(n) B"
    }
}
