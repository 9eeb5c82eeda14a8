import DGRuntime

/// `dgperf slurm submit`: validated options and the sbatch array script they produce (a pure function).

/// A user-facing problem with `dgperf slurm`: one line naming the problem and the fix, and the exit code.
public struct SlurmError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public var exitCode: Int32
    public init(_ message: String, exitCode: Int32 = 2) { self.message = message; self.exitCode = exitCode }
    public var description: String { message }

    /// Exit codes of `dgperf slurm` (documented in `dgperf slurm --help`).
    public static let usage: Int32 = 2
    public static let incomplete: Int32 = 3
    public static let stillRunning: Int32 = 4
    public static let environment: Int32 = 5
}

/// Everything the array script depends on. Build it with `make`, which validates user input.
public struct SlurmSubmitOptions: Equatable, Sendable {
    /// Flags passed verbatim to `dgperf sweep` (never --shard/--output/--resume: the script sets those).
    public var sweepArguments: [String]
    /// Number of shards = array tasks (task i runs `--shard i+1/N`).
    public var tasks: Int
    /// Absolute output directory: shard-i/, logs/, tasks/, slurm-array.sh, slurm-job.json, results.json.
    public var outputDirectory: String
    /// Absolute path of the dgperf binary every task runs.
    public var dgperfPath: String
    /// Absolute directory the tasks run in (relative paths in the sweep flags resolve against it).
    public var workingDirectory: String
    public var partition: String?
    public var constraint: String?
    public var timeLimit: String?
    public var memory: String?
    /// nil when the tasks take whole nodes (`--exclusive`).
    public var cpusPerTask: Int?
    public var exclusive: Bool
    /// Further `#SBATCH` options, e.g. `--account=proj` or `--qos=long`.
    public var extraSbatchOptions: [String]
    public var jobName: String

    public static let scriptName = "slurm-array.sh"

    public var scriptPath: String { outputDirectory + "/" + Self.scriptName }
    public func shardDirectory(_ task: Int) -> String { outputDirectory + "/shard-\(task)" }

    /// Flags the script adds itself; passing them through would run every task on the same slice or file.
    static let reservedSweepFlags = ["--shard", "--output", "--resume", "--out"]

    /// Validates and normalises submit options. `cpusPerTask`: explicit value, else the largest
    /// `--threads` in the sweep flags, else whole nodes (`exclusive`), since the preset picks the threads.
    public static func make(sweepArguments: [String], tasks: Int, outputDirectory: String, dgperfPath: String,
                            workingDirectory: String, partition: String? = nil, constraint: String? = nil,
                            timeLimit: String? = nil, memory: String? = nil, cpusPerTask: Int? = nil,
                            exclusive: Bool = false, extraSbatchOptions: [String] = []) throws -> SlurmSubmitOptions {
        guard tasks >= 1 else {
            throw SlurmError("--tasks \(tasks): need at least 1 array task (one shard each); e.g. --tasks 4")
        }
        guard tasks <= 100_000 else {
            throw SlurmError("--tasks \(tasks) is more than any Slurm allows in one array (MaxArraySize); use fewer, larger shards")
        }
        for flag in sweepArguments {
            let name = flag.split(separator: "=", maxSplits: 1).first.map(String.init) ?? flag
            if reservedSweepFlags.contains(name) {
                throw SlurmError("\(name) cannot be passed to `dgperf slurm submit`: each task gets its own --shard, --output DIR/shard-i and --resume; use --output DIR for the whole job")
            }
        }
        try checkPath(outputDirectory, what: "--output")
        try checkPath(workingDirectory, what: "the current directory")
        try checkPath(dgperfPath, what: "the dgperf binary path")
        for (value, flag) in [(partition, "--partition"), (constraint, "--constraint"), (memory, "--mem")] {
            if let value { try checkToken(value, flag: flag) }
        }
        if let timeLimit { try checkTimeLimit(timeLimit) }
        for option in extraSbatchOptions {
            try checkToken(option, flag: "--sbatch-option")
            guard option.hasPrefix("--") || (option.hasPrefix("-") && option.count > 1) else {
                throw SlurmError("--sbatch-option '\(option)' is not an sbatch option; write it as it appears after #SBATCH, e.g. --sbatch-option=--qos=long")
            }
            for reserved in ["--array", "--output", "--error", "--job-name", "-a", "-o", "-e", "-J"] where option == reserved || option.hasPrefix(reserved + "=") {
                throw SlurmError("--sbatch-option '\(option)': dgperf sets \(reserved) itself (one task per shard, logs under --output); drop it")
            }
        }
        if let cpusPerTask, cpusPerTask < 1 {
            throw SlurmError("--cpus-per-task \(cpusPerTask): need at least 1 CPU per task")
        }
        if exclusive && cpusPerTask != nil {
            throw SlurmError("--exclusive and --cpus-per-task conflict: a task gets either a whole node or that many CPUs; pass one")
        }
        var cpus = cpusPerTask
        if !exclusive && cpus == nil, let threads = try maxThreads(in: sweepArguments) { cpus = threads }
        return SlurmSubmitOptions(
            sweepArguments: sweepArguments.filter { $0 != "--quiet" }, tasks: tasks,
            outputDirectory: normalised(outputDirectory), dgperfPath: dgperfPath,
            workingDirectory: normalised(workingDirectory), partition: partition, constraint: constraint,
            timeLimit: timeLimit, memory: memory, cpusPerTask: cpus, exclusive: cpus == nil,
            extraSbatchOptions: extraSbatchOptions, jobName: jobName(for: normalised(outputDirectory)))
    }

    /// Largest value of `--threads a,b,c` / `--threads=a,b` in the sweep flags, nil when absent.
    static func maxThreads(in arguments: [String]) throws -> Int? {
        var value: String?
        for (i, a) in arguments.enumerated() {
            if a == "--threads" {
                guard i + 1 < arguments.count else { throw SlurmError("--threads needs a value, e.g. --threads 1,2") }
                value = arguments[i + 1]
            } else if a.hasPrefix("--threads=") {
                value = String(a.dropFirst("--threads=".count))
            }
        }
        guard let value else { return nil }
        let parts = value.split(separator: ",", omittingEmptySubsequences: false).map { Int(String($0).trimmingASCIISpaces) }
        guard !parts.isEmpty, parts.allSatisfy({ ($0 ?? 0) >= 1 }) else {
            throw SlurmError("--threads '\(value)' is not a list of positive integers; e.g. --threads 1,2")
        }
        return parts.map { $0! }.max()
    }

    /// Paths go into `#SBATCH --output=` lines, which Slurm splits at spaces and expands at '%'.
    static func checkPath(_ path: String, what: String) throws {
        guard path.hasPrefix("/") else {
            throw SlurmError("\(what) '\(path)' must be absolute (internal error: resolve it first)")
        }
        if let bad = path.unicodeScalars.first(where: { $0.value < 0x21 || $0 == "%" || $0 == "\"" || $0 == "'" || $0 == "\\" || $0.value == 0x7f }) {
            throw SlurmError("\(what) '\(path)' contains \(describe(bad)), which sbatch scripts cannot carry; choose a path without spaces, quotes or '%'")
        }
    }

    static func checkToken(_ value: String, flag: String) throws {
        guard !value.isEmpty else { throw SlurmError("\(flag) is empty; give a value or leave the flag out") }
        if let bad = value.unicodeScalars.first(where: { $0.value < 0x21 || $0 == "\"" || $0 == "'" || $0 == "\\" || $0.value == 0x7f }) {
            throw SlurmError("\(flag) '\(value)' contains \(describe(bad)); #SBATCH lines cannot hold it (use Slurm's own syntax, e.g. --constraint=avx512&haswell)")
        }
    }

    /// Slurm's time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, or UNLIMITED/INFINITE.
    static func checkTimeLimit(_ value: String) throws {
        if value == "UNLIMITED" || value == "INFINITE" { return }
        let dayParts = value.split(separator: "-", omittingEmptySubsequences: false)
        let clock = dayParts.last!.split(separator: ":", omittingEmptySubsequences: false)
        let allDigits = { (s: Substring) in !s.isEmpty && s.allSatisfy { $0.isASCII && $0.isNumber } }
        let ok = dayParts.count <= 2 && (dayParts.count == 1 || allDigits(dayParts[0]))
            && clock.count <= 3 && clock.allSatisfy(allDigits)
        guard ok else {
            throw SlurmError("--time '\(value)' is not a Slurm time limit; use minutes (90), HH:MM:SS (01:30:00) or D-HH:MM:SS (1-00:00:00)")
        }
    }

    private static func describe(_ s: Unicode.Scalar) -> String {
        s.value < 0x21 || s.value == 0x7f ? "a space or control character" : "'\(s)'"
    }

    static func normalised(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }

    /// "dgperf-<dir name>-<hash of the full path>": short in squeue, unique per output directory, so
    /// `collect` finds every job of this directory by name, resubmissions with plain sbatch included.
    static func jobName(for directory: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in directory.utf8 { hash = (hash ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        let base = directory.split(separator: "/").last.map(String.init) ?? "root"
        let safe = String(base.unicodeScalars.filter { ($0.properties.isAlphabetic && $0.isASCII) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" || $0 == "." }.prefix(24))
        let hex = String(hash & 0xffff_ffff, radix: 16)
        return "dgperf-\(safe.isEmpty ? "run" : safe)-\(String(repeating: "0", count: 8 - hex.count) + hex)"
    }
}

public enum SlurmScript {
    /// `--array` value for task ids: "0-3", "1,4", "2".
    public static func arraySpec(_ tasks: [Int]) -> String { Topology.rangeList(tasks) }

    /// Quotes one word for bash: 'it'\''s'.
    public static func shellQuote(_ word: String) -> String {
        if !word.isEmpty && word.unicodeScalars.allSatisfy({ s in
            ("a"..."z").contains(s) || ("A"..."Z").contains(s) || ("0"..."9").contains(s) || "-_./=,:+@%".unicodeScalars.contains(s)
        }) { return word }
        return "'" + word.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
    }

    /// The array script: one sweep shard per task (task i runs `--shard i+1/N` into shard-i/), resuming a
    /// shard that an earlier (killed) task left unfinished, and recording where the task was allowed to run.
    /// Submit it with `sbatch --parsable SCRIPT`; resubmit tasks i,j with `sbatch --array=i,j SCRIPT`.
    public static func render(_ o: SlurmSubmitOptions, dgperfVersion: String) -> String {
        let q = shellQuote
        var lines: [String] = [
            "#!/bin/bash",
            "# dgperf sweep as a Slurm array: one shard per task. Written by `dgperf slurm submit` (dgperf \(dgperfVersion)).",
            "# Collect:            dgperf slurm collect \(o.outputDirectory) --wait",
            "# Resubmit tasks i,j: dgperf slurm submit --output \(o.outputDirectory) --only i,j   (or: sbatch --array=i,j \(o.scriptPath))",
            "#SBATCH --job-name=\(o.jobName)",
            "#SBATCH --array=0-\(o.tasks - 1)",
            "#SBATCH --nodes=1",
            "#SBATCH --ntasks=1",
        ]
        if o.exclusive {
            lines.append("#SBATCH --exclusive")
        } else if let cpus = o.cpusPerTask {
            lines.append("#SBATCH --cpus-per-task=\(cpus)")
        }
        if let p = o.partition { lines.append("#SBATCH --partition=\(p)") }
        if let c = o.constraint { lines.append("#SBATCH --constraint=\(c)") }
        if let t = o.timeLimit { lines.append("#SBATCH --time=\(t)") }
        if let m = o.memory { lines.append("#SBATCH --mem=\(m)") }
        for extra in o.extraSbatchOptions { lines.append("#SBATCH \(extra)") }
        lines += [
            "#SBATCH --output=\(o.outputDirectory)/logs/shard-%a.job-%A.out",
            "#SBATCH --comment=dgperf:\(o.outputDirectory)",
            "set -euo pipefail",
            "DGPERF=\(q(o.dgperfPath))",
            "OUT=\(q(o.outputDirectory))",
            "SHARDS=\(o.tasks)",
            "TASK=${SLURM_ARRAY_TASK_ID:?submit this script with sbatch --array=0-\(o.tasks - 1)}",
            "if [ \"$TASK\" -ge \"$SHARDS\" ]; then echo \"dgperf: array task $TASK is outside 0-$((SHARDS - 1)); resubmit with --array=0-$((SHARDS - 1))\" >&2; exit 2; fi",
            "SHARD_DIR=\"$OUT/shard-$TASK\"",
            "# `dgperf sweep --shard auto` reads these; the explicit --shard below does the same.",
            "export \(ShardEnvironment.countVariable)=$SHARDS",
            "cd \(q(o.workingDirectory))",
            "",
            "# Where this task may run: Slurm's cpuset for the task (the runtime must pin only inside it).",
            "mkdir -p \"$OUT/tasks\"",
            "allowed=$(awk '/^Cpus_allowed_list/ {print $2}' /proc/self/status)",
            "printf '{\"task\":%s,\"jobId\":\"%s\",\"arrayJobId\":\"%s\",\"host\":\"%s\",\"cpusAllowed\":\"%s\",\"slurmCpusPerTask\":\"%s\",\"slurmJobCpusPerNode\":\"%s\",\"startedAt\":\"%s\"}\\n' \\",
            "  \"$TASK\" \"${SLURM_JOB_ID:-}\" \"${SLURM_ARRAY_JOB_ID:-}\" \"$(hostname -s)\" \"$allowed\" \"${SLURM_CPUS_PER_TASK:-}\" \"${SLURM_JOB_CPUS_PER_NODE:-}\" \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\" \\",
            "  >\"$OUT/tasks/task-$TASK.json.tmp\" && mv \"$OUT/tasks/task-$TASK.json.tmp\" \"$OUT/tasks/task-$TASK.json\"",
            "if \"$DGPERF\" topo --help >/dev/null 2>&1; then",
            "  \"$DGPERF\" topo --json >\"$OUT/tasks/topo-$TASK.json.tmp\" 2>/dev/null && mv \"$OUT/tasks/topo-$TASK.json.tmp\" \"$OUT/tasks/topo-$TASK.json\" || rm -f \"$OUT/tasks/topo-$TASK.json.tmp\"",
            "fi",
            "echo \"dgperf: task $TASK on $(hostname -s), allowed CPUs $allowed, shard $((TASK + 1))/$SHARDS -> $SHARD_DIR\" >&2",
            "",
            "# A shard that a killed task left unfinished is resumed (no cell is measured twice); a finished one is kept.",
            "RESUME=()",
            "if [ -f \"$SHARD_DIR/results.json\" ]; then",
            "  if grep -Eq '\"complete\"[[:space:]]*:[[:space:]]*true' \"$SHARD_DIR/results.json\"; then echo \"dgperf: $SHARD_DIR is already complete\" >&2; exit 0; fi",
            "  RESUME=(--resume)",
            "fi",
            "exec \"$DGPERF\" sweep" + o.sweepArguments.map { " " + q($0) }.joined()
                + " --shard \"$((TASK + 1))/$SHARDS\" --output \"$SHARD_DIR\" --quiet ${RESUME[@]+\"${RESUME[@]}\"}",
        ]
        return lines.joined(separator: "\n") + "\n"
    }
}
