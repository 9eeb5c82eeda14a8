/// What Slurm says about array tasks: `squeue` / `sacct` output parsing (pure) and job states.

/// A Slurm job state (squeue %T / sacct State), reduced to what `collect` acts on.
public enum SlurmJobState: Equatable, Sendable, CustomStringConvertible {
    case pending, running, completing, configuring, suspended, requeued, resizing, stopped
    case completed
    case failed, cancelled, timeout, outOfMemory, nodeFail, preempted, bootFail, deadline
    case other(String)

    public init(_ text: String) {
        // sacct writes "CANCELLED by 0"; squeue may add '+' (e.g. "CANCELLED+").
        let word = text.split(separator: " ").first.map(String.init) ?? ""
        switch word.uppercased().filter({ $0 != "+" }) {
        case "PENDING", "PD": self = .pending
        case "RUNNING", "R": self = .running
        case "COMPLETING", "CG": self = .completing
        case "CONFIGURING", "CF": self = .configuring
        case "SUSPENDED", "S": self = .suspended
        case "REQUEUED", "RQ", "REQUEUE_HOLD", "REQUEUE_FED", "RH", "RF": self = .requeued
        case "RESIZING", "RS": self = .resizing
        case "STOPPED", "ST", "SIGNALING", "SI", "STAGE_OUT", "SO", "RESV_DEL_HOLD", "RD": self = .stopped
        case "COMPLETED", "CD": self = .completed
        case "FAILED", "F": self = .failed
        case "CANCELLED", "CA": self = .cancelled
        case "TIMEOUT", "TO": self = .timeout
        case "OUT_OF_MEMORY", "OOM": self = .outOfMemory
        case "NODE_FAIL", "NF": self = .nodeFail
        case "PREEMPTED", "PR": self = .preempted
        case "BOOT_FAIL", "BF": self = .bootFail
        case "DEADLINE", "DL": self = .deadline
        default: self = .other(text)
        }
    }

    /// Queued or running: its result may still come.
    public var isActive: Bool {
        switch self {
        case .pending, .running, .completing, .configuring, .suspended, .requeued, .resizing, .stopped: return true
        default: return false
        }
    }

    /// Ended without success.
    public var isFailure: Bool {
        switch self {
        case .failed, .cancelled, .timeout, .outOfMemory, .nodeFail, .preempted, .bootFail, .deadline, .other: return true
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .pending: return "PENDING"
        case .running: return "RUNNING"
        case .completing: return "COMPLETING"
        case .configuring: return "CONFIGURING"
        case .suspended: return "SUSPENDED"
        case .requeued: return "REQUEUED"
        case .resizing: return "RESIZING"
        case .stopped: return "STOPPED"
        case .completed: return "COMPLETED"
        case .failed: return "FAILED"
        case .cancelled: return "CANCELLED"
        case .timeout: return "TIMEOUT"
        case .outOfMemory: return "OUT_OF_MEMORY"
        case .nodeFail: return "NODE_FAIL"
        case .preempted: return "PREEMPTED"
        case .bootFail: return "BOOT_FAIL"
        case .deadline: return "DEADLINE"
        case .other(let s): return s
        }
    }
}

/// One array task as the scheduler reports it.
public struct SlurmTaskStatus: Equatable, Sendable {
    public var arrayJobID: Int
    public var taskID: Int
    public var state: SlurmJobState
    /// Node list ("" while pending).
    public var nodes: String
    /// sacct's "exit:signal", when known.
    public var exitCode: String?

    public init(arrayJobID: Int, taskID: Int, state: SlurmJobState, nodes: String = "", exitCode: String? = nil) {
        self.arrayJobID = arrayJobID; self.taskID = taskID; self.state = state; self.nodes = nodes; self.exitCode = exitCode
    }
}

public enum SlurmQueue {
    /// squeue arguments whose output `parseSqueue` reads: every array task on its own line, finished
    /// ones too (while slurmctld remembers them, MinJobAge), as "arrayjob|task|state|nodes".
    public static func squeueArguments(jobName: String) -> [String] {
        ["squeue", "--noheader", "--array", "--states=all", "--name=\(jobName)", "--format=%F|%K|%T|%N"]
    }

    public static func squeueArguments(jobIDs: [Int]) -> [String] {
        ["squeue", "--noheader", "--array", "--states=all", "--jobs=\(jobIDs.map(String.init).joined(separator: ","))", "--format=%F|%K|%T|%N"]
    }

    /// sacct arguments whose output `parseSacct` reads (needs accounting; absent on the local test cluster).
    public static func sacctArguments(jobIDs: [Int]) -> [String] {
        ["sacct", "--noheader", "--parsable2", "--allocations", "--jobs=\(jobIDs.map(String.init).joined(separator: ","))",
         "--format=JobID,State,ExitCode,NodeList"]
    }

    /// Parses `squeue --array --format=%F|%K|%T|%N` lines. Task fields may be ranges for pending
    /// tasks ("2-5", "[2-5%1]"); non-array jobs ("N/A") and unreadable lines are skipped.
    public static func parseSqueue(_ output: String) -> [SlurmTaskStatus] {
        var out: [SlurmTaskStatus] = []
        for line in output.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let f = line.split(separator: "|", omittingEmptySubsequences: false).map { String($0).trimmingASCIISpaces }
            guard f.count >= 3, let job = Int(f[0]), let tasks = taskIDs(f[1]) else { continue }
            let state = SlurmJobState(f[2])
            let nodes = f.count > 3 ? f[3] : ""
            for t in tasks { out.append(SlurmTaskStatus(arrayJobID: job, taskID: t, state: state, nodes: nodes)) }
        }
        return out
    }

    /// Parses `sacct --parsable2 --format=JobID,State,ExitCode,NodeList` lines: "12_3|COMPLETED|0:0|n1",
    /// "12_[4-6]|PENDING|0:0|None assigned", "12_1|CANCELLED by 0|0:15|n2". Steps ("12_3.batch") are skipped.
    public static func parseSacct(_ output: String) -> [SlurmTaskStatus] {
        var out: [SlurmTaskStatus] = []
        for line in output.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let f = line.split(separator: "|", omittingEmptySubsequences: false).map { String($0).trimmingASCIISpaces }
            guard f.count >= 2, !f[0].contains(".") else { continue }
            let id = f[0].split(separator: "_", maxSplits: 1).map(String.init)
            guard id.count == 2, let job = Int(id[0]), let tasks = taskIDs(id[1]) else { continue }
            let state = SlurmJobState(f[1])
            let exit = f.count > 2 && !f[2].isEmpty ? f[2] : nil
            let nodes = f.count > 3 && f[3] != "None assigned" ? f[3] : ""
            for t in tasks { out.append(SlurmTaskStatus(arrayJobID: job, taskID: t, state: state, nodes: nodes, exitCode: exit)) }
        }
        return out
    }

    /// Task ids of an array expression: "3", "0-3", "1,4-5", "[0-7%2]", "0-6:2". nil when not one.
    public static func taskIDs(_ text: String) -> [Int]? {
        var s = Substring(text)
        if s.first == "[" { s = s.dropFirst() }
        if s.last == "]" { s = s.dropLast() }
        if let pct = s.firstIndex(of: "%") { s = s[..<pct] }
        guard !s.isEmpty else { return nil }
        var ids: [Int] = []
        for part in s.split(separator: ",") {
            let stepParts = part.split(separator: ":", maxSplits: 1)
            let step = stepParts.count == 2 ? Int(stepParts[1]) : 1
            let bounds = stepParts[0].split(separator: "-", maxSplits: 1)
            guard let step, step >= 1, let lo = Int(bounds[0]) else { return nil }
            let hi = bounds.count == 2 ? Int(bounds[1]) : lo
            guard let hi, hi >= lo, hi - lo <= 1_000_000 else { return nil }
            ids += stride(from: lo, through: hi, by: step)
        }
        return ids
    }

    /// The newest report per task: the highest array job id wins (a resubmission supersedes the original).
    public static func latestPerTask(_ statuses: [SlurmTaskStatus]) -> [Int: SlurmTaskStatus] {
        var latest: [Int: SlurmTaskStatus] = [:]
        for s in statuses {
            if let old = latest[s.taskID], old.arrayJobID > s.arrayJobID { continue }
            latest[s.taskID] = s
        }
        return latest
    }

    /// The job id printed by `sbatch --parsable`: "1234" or "1234;cluster".
    public static func parseSbatchParsable(_ output: String) -> Int? {
        let first = output.split(whereSeparator: { $0 == "\n" }).first.map(String.init)?.trimmingASCIISpaces ?? ""
        return Int(first.split(separator: ";").first.map(String.init) ?? "")
    }
}
