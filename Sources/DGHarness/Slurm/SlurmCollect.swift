import FoundationEssentials

/// `dgperf slurm collect`: decides, from what Slurm reports and what each shard directory holds, which
/// shards are done, still running, or need resubmitting (pure; the command does the I/O and the merge).

/// The part of a shard's results.json (schema "dgperf.results/1") that collect needs.
public struct ShardResultsSummary: Equatable, Sendable {
    public var complete: Bool
    public var cellKeys: [String]

    public init(complete: Bool, cellKeys: [String]) { self.complete = complete; self.cellKeys = cellKeys }

    public static let resultsSchema = "dgperf.results/1"

    private struct Minimal: Decodable {
        struct Cell: Decodable { var key: String }
        var schema: String
        var complete: Bool
        var cells: [Cell]
    }

    /// Reads DIR/results.json; nil when absent, throws when it is not a dgperf results file.
    public static func load(directory: String) throws -> ShardResultsSummary? {
        let path = directory + "/results.json"
        guard let data = SlurmFiles.read(path) else { return nil }
        return try decode(data, path: path)
    }

    public static func decode(_ data: Data, path: String) throws -> ShardResultsSummary {
        let m: Minimal
        do { m = try JSONDecoder().decode(Minimal.self, from: data) } catch {
            throw SlurmError("'\(path)' is not a dgperf results file (\(error)); delete it and resubmit that shard", exitCode: SlurmError.incomplete)
        }
        guard m.schema == resultsSchema else {
            throw SlurmError("'\(path)' has schema '\(m.schema)', expected '\(resultsSchema)'; run the shards and collect with the same dgperf", exitCode: SlurmError.incomplete)
        }
        return ShardResultsSummary(complete: m.complete, cellKeys: m.cells.map(\.key))
    }
}

/// One shard (= array task) as collect sees it.
public enum ShardOutcome: Equatable, Sendable {
    /// shard-i/results.json is complete.
    case done(cells: Int)
    /// Queued or running in job `jobID`.
    case active(SlurmJobState, jobID: Int)
    /// Ended (in `jobID`) without complete results.
    case failed(SlurmJobState, jobID: Int, partialCells: Int)
    /// Slurm does not (or no longer) know the task and its results are not complete.
    case missing(partialCells: Int)
}

public struct SlurmCollectPlan: Equatable, Sendable {
    /// Indexed by task id 0..<tasks.
    public var outcomes: [ShardOutcome]

    public var done: [Int] { ids { if case .done = $0 { true } else { false } } }
    public var active: [Int] { ids { if case .active = $0 { true } else { false } } }
    /// Failed or missing: these need resubmitting.
    public var unfinished: [Int] {
        ids { switch $0 { case .failed, .missing: true; default: false } }
    }
    public var isComplete: Bool { done.count == outcomes.count }

    private func ids(_ match: (ShardOutcome) -> Bool) -> [Int] { outcomes.indices.filter { match(outcomes[$0]) } }

    /// One line per shard that is not done, e.g. "shard 1 (task 1): CANCELLED in job 12, 3 cells kept (resumes)".
    public func problemLines(logDirectory: String) -> [String] {
        outcomes.indices.compactMap { i in
            switch outcomes[i] {
            case .done: return nil
            case .active(let state, let job): return "task \(i) (shard \(i + 1)/\(outcomes.count)): \(state) in job \(job)_\(i)"
            case .failed(let state, let job, let partial):
                let detail = state == .completed ? "ended without a complete shard-\(i)/results.json" : "\(state)"
                return "task \(i) (shard \(i + 1)/\(outcomes.count)): \(detail) in job \(job)_\(i)\(partialNote(partial)); log: \(logDirectory)/shard-\(i).job-\(job).out"
            case .missing(let partial):
                return "task \(i) (shard \(i + 1)/\(outcomes.count)): missing — no complete results, and Slurm has no record of the task (cancelled before it started, or purged)\(partialNote(partial))"
            }
        }
    }

    private func partialNote(_ cells: Int) -> String {
        cells > 0 ? ", \(cells) cell\(cells == 1 ? "" : "s") kept (a resubmission resumes, nothing is measured twice)" : ""
    }

    /// The commands that resubmit exactly the unfinished tasks.
    public func resubmitCommands(dgperf: String, record: SlurmJobRecord) -> [String] {
        let tasks = unfinished
        guard !tasks.isEmpty else { return [] }
        let only = SlurmScript.arraySpec(tasks)
        let q = SlurmScript.shellQuote
        return ["\(q(dgperf)) slurm submit --output \(q(record.outputDirectory)) --only \(only)",
                "sbatch --array=\(only) \(q(record.script))"]
    }
}

public enum SlurmCollect {
    /// `scheduler`: the newest status per task id (see `SlurmQueue.latestPerTask`), empty when Slurm has
    /// forgotten the job. `shards`: each task's results summary, absent when it wrote none.
    public static func plan(tasks: Int, scheduler: [Int: SlurmTaskStatus], shards: [Int: ShardResultsSummary]) -> SlurmCollectPlan {
        let outcomes = (0..<tasks).map { i -> ShardOutcome in
            let partial = shards[i]?.cellKeys.count ?? 0
            if let s = shards[i], s.complete { return .done(cells: s.cellKeys.count) }
            guard let status = scheduler[i] else { return .missing(partialCells: partial) }
            if status.state.isActive { return .active(status.state, jobID: status.arrayJobID) }
            return .failed(status.state, jobID: status.arrayJobID, partialCells: partial)
        }
        return SlurmCollectPlan(outcomes: outcomes)
    }

    /// Checks a merged cell list against the shards it came from: every shard cell exactly once.
    /// Returns a problem description, or nil when the merge is exact.
    public static func verifyMerge(mergedKeys: [String], shards: [Int: ShardResultsSummary]) -> String? {
        var seen = Set<String>()
        for k in mergedKeys where !seen.insert(k).inserted { return "cell '\(k)' appears twice in the merged results" }
        let expected = shards.values.reduce(into: [String]()) { $0 += $1.cellKeys }
        let expectedSet = Set(expected)
        if expectedSet.count != expected.count {
            var counts: [String: Int] = [:]
            for k in expected { counts[k, default: 0] += 1 }
            let dup = counts.filter { $0.value > 1 }.keys.sorted().first!
            return "cell '\(dup)' was measured by more than one shard"
        }
        if seen != expectedSet {
            let lost = expectedSet.subtracting(seen).sorted()
            let extra = seen.subtracting(expectedSet).sorted()
            return "merged cells differ from the shards' (\(lost.count) lost\(lost.first.map { ", e.g. '\($0)'" } ?? ""), \(extra.count) unexpected)"
        }
        return nil
    }
}
