/// `--shard auto`: which slice of a sweep this process runs, read from the job scheduler's environment,
/// and how cells are dealt to slices by estimated cost.
///
/// Numbering: `index` is 1-based, exactly as in `--shard K/N`; scheduler task ids are 0-based.
public struct ShardAssignment: Equatable, Sendable, CustomStringConvertible {
    /// 1-based slice number K of `--shard K/N`.
    public var index: Int
    /// Number of slices N.
    public var count: Int
    /// Which variables decided it, for the log line "shard 2/4 from …".
    public var source: String

    public init(index: Int, count: Int, source: String) {
        self.index = index; self.count = count; self.source = source
    }

    /// "K/N", the `--shard` form.
    public var description: String { "\(index)/\(count)" }
}

/// A problem with the scheduler environment; `message` names the variable and the fix.
public struct ShardEnvironmentError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public enum ShardEnvironment {
    /// Total number of shards, set by `dgperf slurm submit`'s script (and needed by Indexed Jobs, which do
    /// not export their completion count). When set, a Slurm task id is the 0-based shard number itself,
    /// so resubmitting only `--array=3` still runs shard 4/N rather than 1/1.
    public static let countVariable = "DGPERF_SHARD_COUNT"

    /// Resolves `--shard auto` from `environment` (pure: pass `ProcessInfo.processInfo.environment`).
    ///
    /// Order: Slurm array (`SLURM_ARRAY_TASK_ID`; count from `DGPERF_SHARD_COUNT`, else
    /// `SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN` of `SLURM_ARRAY_TASK_COUNT`, which must be a contiguous
    /// step-1 array), then Kubernetes Indexed Job (`JOB_COMPLETION_INDEX` + `DGPERF_SHARD_COUNT`).
    public static func resolve(_ environment: [String: String]) throws -> ShardAssignment {
        let explicitCount = try environment[countVariable].map { try integer($0, countVariable, minimum: 1) }
        if let rawID = environment["SLURM_ARRAY_TASK_ID"] {
            let id = try integer(rawID, "SLURM_ARRAY_TASK_ID", minimum: 0)
            if let count = explicitCount {
                guard id < count else {
                    throw ShardEnvironmentError("--shard auto: SLURM_ARRAY_TASK_ID=\(id) is outside 0…\(count - 1) (\(countVariable)=\(count)); number array tasks from 0, e.g. sbatch --array=0-\(count - 1)")
                }
                return ShardAssignment(index: id + 1, count: count,
                                       source: "Slurm array task \(id) (SLURM_ARRAY_TASK_ID=\(id), \(countVariable)=\(count))")
            }
            guard let rawMin = environment["SLURM_ARRAY_TASK_MIN"], let rawCount = environment["SLURM_ARRAY_TASK_COUNT"] else {
                throw ShardEnvironmentError("--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_MIN/SLURM_ARRAY_TASK_COUNT are not (Slurm older than 18.08?); set \(countVariable)=N or pass --shard K/N")
            }
            let minID = try integer(rawMin, "SLURM_ARRAY_TASK_MIN", minimum: 0)
            let count = try integer(rawCount, "SLURM_ARRAY_TASK_COUNT", minimum: 1)
            let step = try environment["SLURM_ARRAY_TASK_STEP"].map { try integer($0, "SLURM_ARRAY_TASK_STEP", minimum: 1) } ?? 1
            let maxID = try environment["SLURM_ARRAY_TASK_MAX"].map { try integer($0, "SLURM_ARRAY_TASK_MAX", minimum: 0) }
            let contiguous = step == 1 && (maxID.map { $0 - minID + 1 == count } ?? true)
            guard contiguous else {
                throw ShardEnvironmentError("--shard auto: the array is not contiguous (SLURM_ARRAY_TASK_MIN=\(minID), MAX=\(maxID.map(String.init) ?? "?"), STEP=\(step), COUNT=\(count)), so task ids do not number the shards; set \(countVariable)=N (task id = shard number − 1) or submit --array=0-(N−1)")
            }
            guard id >= minID, id - minID < count else {
                throw ShardEnvironmentError("--shard auto: SLURM_ARRAY_TASK_ID=\(id) is outside SLURM_ARRAY_TASK_MIN=\(minID) … +\(count - 1); this is not an array task of a contiguous array — pass --shard K/N")
            }
            return ShardAssignment(index: id - minID + 1, count: count,
                                   source: "Slurm array task \(id) (SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN=\(minID), SLURM_ARRAY_TASK_COUNT=\(count))")
        }
        if let rawIndex = environment["JOB_COMPLETION_INDEX"] {
            let index = try integer(rawIndex, "JOB_COMPLETION_INDEX", minimum: 0)
            guard let count = explicitCount else {
                throw ShardEnvironmentError("--shard auto: JOB_COMPLETION_INDEX=\(index) is set but the shard count is not; set \(countVariable) to the Job's completions (e.g. env \(countVariable): \"4\")")
            }
            guard index < count else {
                throw ShardEnvironmentError("--shard auto: JOB_COMPLETION_INDEX=\(index) is outside 0…\(count - 1) (\(countVariable)=\(count)); make \(countVariable) equal the Job's completions")
            }
            return ShardAssignment(index: index + 1, count: count,
                                   source: "indexed job (JOB_COMPLETION_INDEX=\(index), \(countVariable)=\(count))")
        }
        throw ShardEnvironmentError("--shard auto: no scheduler index in the environment (SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX); run it as a Slurm array task / indexed job, or pass --shard K/N")
    }

    private static func integer(_ text: String, _ name: String, minimum: Int) throws -> Int {
        let trimmed = text.trimmingASCIISpaces
        guard let v = Int(trimmed), v >= minimum else {
            throw ShardEnvironmentError("--shard auto: \(name)='\(text)' is not an integer ≥ \(minimum); check the job's environment")
        }
        return v
    }
}

/// Deals items (cells, or whole shape groups — deal groups when a shard must hold a cell's dense
/// reference) to `count` shards so that the estimated cost per shard is balanced: greedy
/// longest-processing-time. Costs are sorted descending (ties: lower index first) and each goes to the
/// currently cheapest shard (ties: the one with fewer items, then the lower shard), so the result depends only on the inputs.
/// LPT's makespan is at most 4/3 − 1/(3·count) of the optimum.
///
/// A cell's cost estimate: executed MACs × repetitions (plus warm-up calls) is a good proxy.
/// Negative, NaN or infinite costs count as 0. Every index 0..<cellCosts.count appears in exactly one
/// shard; each shard lists its indices ascending; shards may be empty when count > cellCosts.count.
/// - Precondition: count ≥ 1 (validate user input before calling).
public func balancedShards(cellCosts: [Double], count: Int) -> [[Int]] {
    precondition(count >= 1, "balancedShards needs count ≥ 1")
    let costs = cellCosts.map { $0.isFinite && $0 > 0 ? $0 : 0 }
    let order = costs.indices.sorted { costs[$0] != costs[$1] ? costs[$0] > costs[$1] : $0 < $1 }
    var shards = [[Int]](repeating: [], count: count)
    var load = [Double](repeating: 0, count: count)
    for item in order {
        var best = 0
        for s in 1..<count where load[s] < load[best] || (load[s] == load[best] && shards[s].count < shards[best].count) {
            best = s
        }
        shards[best].append(item)
        load[best] += costs[item]
    }
    return shards.map { $0.sorted() }
}

extension String {
    var trimmingASCIISpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\n" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" || l == "\r" { s.removeLast() }
        return String(s)
    }
}
