import DGKernels
import DGModels
import DGRuntime
import DGStats
import FoundationEssentials

/// `dgperf profile` output, schema "dgperf.profile/1": where one forward call's time goes, per layer and
/// phase, next to the work the kernels accounted for it and the machine's measured limits.
public struct ProfileReport: Codable, Sendable {
    public static let schemaVersion = "dgperf.profile/1"
    public var schema: String
    public var spec: ModelSpec
    public var batch: Int
    public var threads: Int
    public var weights: String?
    /// Mean active fraction of the gated units in the profiled call (nil in files written before session 10).
    public var activeFraction: Double?
    /// Where the inputs came from ("gaussian" or "fashion-mnist test").
    public var inputs: String
    public var kernel: String
    public var repetitions: Int
    /// Forward calls per timed sample (short calls are batched so the clock's resolution does not matter).
    public var callsPerSample: Int
    public var environment: EnvironmentInfo
    public var limits: MachineLimits
    /// Compute roof (GFLOP/s) and DRAM roof (GB/s) for `threads` threads, as used for the fractions below.
    public var peakGflops: Double
    public var memoryGigabytesPerSecond: Double
    public var phases: [ProfilePhaseRow]
    public var totals: ProfileTotals
    /// What the model itself reported for one forward call (kernel accounting).
    public var forwardCost: CostBreakdown
    public var counters: CounterReport
    /// Two sentences: what dominates and how close to the limits the big phases run.
    public var interpretation: [String]
    public var notes: [String]
}

/// One (layer, phase) cell per forward call.
public struct ProfilePhaseRow: Codable, Sendable, Equatable {
    /// -1 = model level (work outside any layer), 0… = `layerName`.
    public var layer: Int
    public var layerName: String
    public var phase: Phase
    /// Times the phase was entered per forward call.
    public var calls: Double
    /// Seconds per forward call over the repetitions.
    public var medianSeconds: Double
    public var p05Seconds: Double
    public var p95Seconds: Double
    /// medianSeconds / Σ medianSeconds of all rows.
    public var share: Double
    /// Work per forward call from the kernels' own accounting (`KernelCost`).
    public var macs: Int
    public var bytesRead: Int
    public var bytesWritten: Int
    public var gflops: Double?
    public var gigabytesPerSecond: Double?
    /// FLOPs per byte moved (nil without FLOPs or bytes).
    public var arithmeticIntensity: Double?
    /// GFLOP/s ÷ the compute roof for the run's threads.
    public var fractionOfPeak: Double?
    /// GB/s ÷ the DRAM roof.
    public var fractionOfBandwidth: Double?
    /// "compute" or "memory" by the roofline ridge; nil without FLOPs and bytes.
    public var bound: String?

    public var bytes: Int { bytesRead + bytesWritten }
}

public struct ProfileTotals: Codable, Sendable, Equatable {
    /// Median wall time of one forward call with the recorder attached / detached (interleaved repetitions).
    public var profiledMedianSeconds: Double
    public var unprofiledMedianSeconds: Double
    public var unprofiledP05Seconds: Double
    public var unprofiledP95Seconds: Double
    /// profiled / unprofiled − 1 (the instrumentation's cost; the target is ≤ 5%).
    public var overheadFraction: Double
    /// Σ of the rows' medians, and its ratio to the profiled median (≈ 1).
    public var phaseSumSeconds: Double
    public var phaseSumOverProfiled: Double
    public var macs: Int
    public var bytes: Int
    /// 2·MACs per unprofiled median: the whole call's GFLOP/s.
    public var gflops: Double
}

extension ProfileReport {
    public func encoded() -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = (try? enc.encode(self)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    /// Loads a profile JSON with schema checks and clear errors.
    public static func load(_ path: String) throws -> ProfileReport {
        guard AtomicFile.exists(path) else {
            throw HarnessError(.noInput, "no profile at '\(path)'; write one with `dgperf profile … --output FILE.json`")
        }
        let text = try AtomicFile.read(path)
        struct SchemaOnly: Decodable { var schema: String? }
        let data = Data(text.utf8)
        guard let head = try? JSONDecoder().decode(SchemaOnly.self, from: data) else {
            throw HarnessError(.data, "'\(path)' is not valid JSON; pass a profile written by `dgperf profile --output FILE.json`")
        }
        guard head.schema == schemaVersion else {
            throw HarnessError(.data, "'\(path)' has schema '\(head.schema ?? "none")', not '\(schemaVersion)'; pass a profile written by `dgperf profile --output FILE.json`")
        }
        do { return try JSONDecoder().decode(ProfileReport.self, from: data) } catch {
            throw HarnessError(.data, "'\(path)' is a damaged profile (\(JSONErrors.describe(error))); re-run `dgperf profile`")
        }
    }
}
