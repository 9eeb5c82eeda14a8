import ArgumentParser
import DGHarness
import Glibc

/// `dgperf slurm submit|collect`: a sweep as a Slurm array job (one `--shard` per task), merged back into
/// one results.json. Talks to the sweep only through the CLI (`dgperf sweep … --shard K/N --output D`,
/// `dgperf merge … --output M`).
struct SlurmCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slurm",
        abstract: "Run a sweep as a Slurm array job (one shard per task) and merge the shards.",
        discussion: """
        Examples:
          dgperf slurm submit --preset full --threads 1,8 --tasks 16 --time 4:00:00 --output /shared/full
          dgperf slurm collect /shared/full --wait     (or: dgperf slurm collect JOBID --wait)
          dgperf slurm submit --output /shared/full --only 3,7     (resubmit what collect reported)

        Task i runs: dgperf sweep FLAGS --shard i+1/N --output DIR/shard-i --quiet
        A shard that a killed task left unfinished is resumed. Logs: DIR/logs/. Host and allowed CPUs of each task: DIR/tasks/.
        Exit codes: 0 ok, 2 bad input, 3 shards failed or missing, 4 shards still queued or running, 5 Slurm or filesystem error.
        Local one-node Slurm for trying it: scripts/slurm-local.sh start|stop
        """,
        subcommands: [SlurmSubmitCommand.self, SlurmCollectCommand.self]
    )
}

struct SlurmSubmitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Write an sbatch array script for a sweep and submit it (prints the job id).",
        discussion: "Unrecognised flags go to `dgperf sweep` unchanged (e.g. --preset full --threads 1,2 --models dense,dg)."
    )

    @Option(help: "Array tasks = shards; task i runs --shard i+1/N.") var tasks: Int?
    @Option(name: [.customLong("output"), .customLong("out")],
            help: "Directory for the job, on a filesystem the nodes share (default results/slurm-<timestamp>).") var output: String?
    @Option(help: "Slurm partition.") var partition: String?
    @Option(help: "Slurm node features, e.g. avx512 (sbatch --constraint).") var constraint: String?
    @Option(help: "Time limit per task: minutes, HH:MM:SS or D-HH:MM:SS.") var time: String?
    @Option(help: "Memory per node, e.g. 8G (sbatch --mem).") var mem: String?
    @Option(help: "CPUs per task (default: the largest --threads; whole nodes when --threads is not given).") var cpusPerTask: Int?
    @Flag(help: "Whole node per task (quietest timings).") var exclusive = false
    @Option(name: .customLong("sbatch-option"), parsing: .unconditionalSingleValue,
            help: "Extra #SBATCH option, repeatable, e.g. --sbatch-option=--account=proj.") var sbatchOptions: [String] = []
    @Option(help: "Resubmit only these task ids of the job in --output (e.g. 1,3 or 0-2), with its recorded flags.") var only: String?
    @Option(help: "dgperf binary the tasks run (default: this one); must exist at that path on the nodes.") var dgperf: String?
    @Flag(help: "Print the script (or, with --only, the sbatch command) without writing or submitting anything.") var dryRun = false
    @Argument(parsing: .allUnrecognized, help: "Flags for `dgperf sweep`.") var sweepFlags: [String] = []

    func run() throws {
        try SlurmCLI.reportingErrors {
            if let only { try resubmit(only) } else { try submitNew() }
        }
    }

    private func submitNew() throws {
        guard let tasks else {
            throw SlurmError("--tasks N is required: the number of array tasks (shards), e.g. --tasks 4")
        }
        guard let binary = dgperf.map(SlurmFiles.absolute) ?? SlurmFiles.currentExecutable() else {
            throw SlurmError("cannot find this dgperf's own path (/proc/self/exe); pass --dgperf PATH", exitCode: SlurmError.environment)
        }
        let out = SlurmFiles.absolute(output ?? "results/slurm-\(SlurmFiles.stampNow())")
        let options = try SlurmSubmitOptions.make(
            sweepArguments: sweepFlags, tasks: tasks, outputDirectory: out, dgperfPath: binary,
            workingDirectory: SlurmFiles.currentDirectory(), partition: partition, constraint: constraint, timeLimit: time,
            memory: mem, cpusPerTask: cpusPerTask, exclusive: exclusive, extraSbatchOptions: sbatchOptions)
        let script = SlurmScript.render(options, dgperfVersion: DGPerfVersion.string)
        if dryRun {
            print(script, terminator: "")
            SlurmCLI.err("dry run: nothing written or submitted (the script would be \(options.scriptPath))")
            return
        }
        guard access(binary, X_OK) == 0 else {
            throw SlurmError("--dgperf '\(binary)' is not an executable file; pass the path of a dgperf binary the nodes can run")
        }
        let sbatch = try SlurmCLI.requireTool("sbatch")
        if SlurmFiles.exists(SlurmJobRecord.path(in: out)) {
            throw SlurmError("'\(out)' already holds a submitted job (\(SlurmJobRecord.fileName)); collect it, resubmit tasks with --only, or choose a new --output")
        }
        try SlurmFiles.makeDirectory(out + "/logs")
        try SlurmFiles.writeAtomically(script, to: options.scriptPath, mode: 0o755)
        let argv = [sbatch, "--parsable", options.scriptPath]
        let jobID = try SlurmCLI.sbatch(argv)
        var record = SlurmJobRecord(options: options, dgperfVersion: DGPerfVersion.string)
        record.submissions.append(.init(jobID: jobID, taskIDs: Array(0..<tasks), submittedAt: SlurmFiles.isoNow(),
                                        submitHost: SlurmFiles.hostName(), sbatch: argv))
        try record.save()
        print(jobID)
        let cpus = options.exclusive ? "whole node per task" : "\(options.cpusPerTask!) CPU\(options.cpusPerTask! == 1 ? "" : "s") per task"
        SlurmCLI.err("submitted array job \(jobID): \(tasks) task\(tasks == 1 ? "" : "s") (\(cpus)) → \(out)")
        SlurmCLI.err("script: \(options.scriptPath)")
        SlurmCLI.err("next: \(SlurmScript.shellQuote(SlurmFiles.currentExecutable() ?? "dgperf")) slurm collect \(out) --wait")
    }

    private func resubmit(_ only: String) throws {
        guard let output else {
            throw SlurmError("--only needs --output DIR of the earlier `dgperf slurm submit`")
        }
        let record = try SlurmJobRecord.load(directory: SlurmFiles.absolute(output))
        guard let ids = SlurmQueue.taskIDs(only), !ids.isEmpty else {
            throw SlurmError("--only '\(only)' is not a list of task ids; e.g. --only 1,3 or --only 0-2")
        }
        if let bad = ids.first(where: { $0 >= record.tasks }) {
            throw SlurmError("--only: task \(bad) does not exist; the job in '\(record.outputDirectory)' has tasks 0-\(record.tasks - 1)")
        }
        if let tasks, tasks != record.tasks {
            throw SlurmError("--tasks \(tasks) differs from the recorded \(record.tasks); --only reuses the recorded job, drop --tasks")
        }
        let given = sweepFlags.filter { $0 != "--quiet" }
        if !given.isEmpty && given != record.sweepArguments {
            throw SlurmError("--only reuses the recorded sweep flags (\(record.sweepArguments.joined(separator: " "))); drop the sweep flags, or submit a new job into a new --output")
        }
        if dgperf != nil || cpusPerTask != nil || exclusive || !sbatchOptions.isEmpty {
            throw SlurmError("--only reruns the recorded script; only --partition, --constraint, --time and --mem can change")
        }
        let spec = SlurmScript.arraySpec(ids)
        var argv = ["sbatch", "--parsable", "--array=\(spec)"]
        if let partition { argv.append("--partition=\(partition)") }
        if let constraint { argv.append("--constraint=\(constraint)") }
        if let time { argv.append("--time=\(time)") }
        if let mem { argv.append("--mem=\(mem)") }
        argv.append(record.script)
        if dryRun {
            print(argv.map(SlurmScript.shellQuote).joined(separator: " "))
            SlurmCLI.err("dry run: nothing submitted")
            return
        }
        argv[0] = try SlurmCLI.requireTool("sbatch")
        guard SlurmFiles.exists(record.script) else {
            throw SlurmError("the recorded script '\(record.script)' is gone; submit a new job into a new --output", exitCode: SlurmError.environment)
        }
        // Never run a shard twice at once: both would write shard-i/.
        let queued = SlurmQueue.latestPerTask(SlurmCLI.schedulerStatuses(record, useSacct: false).statuses)
        if let busy = ids.first(where: { queued[$0]?.state.isActive == true }), let s = queued[busy] {
            throw SlurmError("task \(busy) is still \(s.state) in job \(s.arrayJobID)_\(busy); wait for it, or scancel \(s.arrayJobID)_\(busy) first", exitCode: SlurmError.stillRunning)
        }
        let jobID = try SlurmCLI.sbatch(argv)
        var updated = record
        updated.submissions.append(.init(jobID: jobID, taskIDs: ids, submittedAt: SlurmFiles.isoNow(),
                                         submitHost: SlurmFiles.hostName(), sbatch: argv))
        try updated.save()
        print(jobID)
        SlurmCLI.err("resubmitted task\(ids.count == 1 ? "" : "s") \(spec) as array job \(jobID) → \(record.outputDirectory)")
        SlurmCLI.err("next: \(SlurmScript.shellQuote(SlurmFiles.currentExecutable() ?? "dgperf")) slurm collect \(record.outputDirectory) --wait")
    }
}

struct SlurmCollectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "collect",
        abstract: "Wait for a submitted sweep, merge its shards into DIR/results.json, report shards to resubmit."
    )

    @Argument(help: "Job id, or the --output directory of `dgperf slurm submit`.") var job: String
    @Flag(help: "Wait until no task is queued or running.") var wait = false
    @Option(help: "Seconds between scheduler queries while waiting.") var poll: Double = 30
    @Option(help: "Give up waiting after this many seconds (exit 4).") var timeout: Double?

    func run() throws {
        try SlurmCLI.reportingErrors {
            guard poll.isFinite, poll >= 0.2 else { throw SlurmError("--poll \(poll): need at least 0.2 seconds between queries, e.g. --poll 30") }
            if let timeout, !(timeout.isFinite && timeout > 0) { throw SlurmError("--timeout \(timeout): need a positive number of seconds") }
            var record = try SlurmJobRecord.load(directory: try resolveDirectory())
            let start = SlurmCLI.now()
            var lastSummary = ""
            var plan: SlurmCollectPlan
            var shards: [Int: ShardResultsSummary]
            var schedulerNote: String?
            while true {
                let query = SlurmCLI.schedulerStatuses(record, useSacct: true)
                schedulerNote = query.note
                shards = [:]
                for i in 0..<record.tasks {
                    shards[i] = try ShardResultsSummary.load(directory: record.outputDirectory + "/shard-\(i)")
                }
                plan = SlurmCollect.plan(tasks: record.tasks, scheduler: SlurmQueue.latestPerTask(query.statuses), shards: shards)
                guard wait, !plan.active.isEmpty else { break }
                let summary = "\(plan.done.count)/\(record.tasks) shards done, \(plan.active.count) queued or running, \(plan.unfinished.count) failed or missing"
                if summary != lastSummary { SlurmCLI.err("waiting: \(summary)"); lastSummary = summary }
                if let timeout, SlurmCLI.now() - start + poll > timeout {
                    throw SlurmError("gave up after --timeout \(timeout) s: \(summary); collect again later", exitCode: SlurmError.stillRunning)
                }
                SlurmCLI.sleep(seconds: poll)
            }
            if let schedulerNote { SlurmCLI.err("note: \(schedulerNote)") }

            // Where the tasks ran and which CPUs they were allowed (the runtime pins inside that set).
            let placements = record.readPlacements()
            if !placements.isEmpty {
                record.placements = placements
                try record.save()
                for p in placements {
                    SlurmCLI.err("task \(p.task): host \(p.host), job \(p.arrayJobId)_\(p.task), allowed CPUs \(p.cpusAllowed)\(p.slurmCpusPerTask.isEmpty ? "" : " (cpus-per-task \(p.slurmCpusPerTask))")")
                }
            }

            guard plan.isComplete else {
                for line in plan.problemLines(logDirectory: record.outputDirectory + "/logs") { SlurmCLI.err(line) }
                let done = "\(plan.done.count) of \(record.tasks) shards done"
                if plan.unfinished.isEmpty {
                    throw SlurmError("incomplete: \(done), the rest queued or running; collect again later or add --wait", exitCode: SlurmError.stillRunning)
                }
                let commands = plan.resubmitCommands(dgperf: SlurmFiles.currentExecutable() ?? "dgperf", record: record)
                SlurmCLI.err("resubmit only the unfinished shards (\(SlurmScript.arraySpec(plan.unfinished))):")
                SlurmCLI.err("  \(commands[0])")
                SlurmCLI.err("  or: \(commands[1])")
                throw SlurmError("incomplete: \(done); resubmit the shards above, then collect again", exitCode: SlurmError.incomplete)
            }
            try merge(record, shards: shards)
        }
    }

    /// A directory, or a job id found in ./results/*/slurm-job.json or in the scheduler's job comment.
    private func resolveDirectory() throws -> String {
        if SlurmFiles.isDirectory(job) { return SlurmFiles.absolute(job) }
        let idText = job.split(separator: "_").first.map(String.init) ?? job
        guard let id = Int(idText), id > 0 else {
            throw SlurmError("'\(job)' is neither a directory nor a Slurm job id; pass the submit --output DIR or the job id it printed")
        }
        if let dir = SlurmJobRecord.find(jobID: id, under: "results") { return SlurmFiles.absolute(dir) }
        if SlurmProcess.which("squeue") != nil,
           let out = try? SlurmProcess.run(["squeue", "--noheader", "--jobs=\(id)", "--states=all", "--format=%k"]), out.succeeded,
           let comment = out.stdout.split(separator: "\n").first.map(String.init)?.slurmTrimmed(), comment.hasPrefix("dgperf:") {
            return String(comment.dropFirst("dgperf:".count))
        }
        throw SlurmError("unknown job id \(id): no results/*/slurm-job.json here lists it and Slurm does not know it (or it is not a dgperf job); pass the submit --output DIR instead")
    }

    private func merge(_ record: SlurmJobRecord, shards: [Int: ShardResultsSummary]) throws {
        let dir = record.outputDirectory
        let binary = access(record.dgperf, X_OK) == 0 ? record.dgperf : (SlurmFiles.currentExecutable() ?? record.dgperf)
        let tmp = dir + "/.merge-\(getpid())"
        SlurmFiles.removeFlatDirectory(tmp)
        defer { SlurmFiles.removeFlatDirectory(tmp) }
        let inputs = (0..<record.tasks).map { "\(dir)/shard-\($0)" }
        let result = try SlurmProcess.run([binary, "merge"] + inputs + ["--output", tmp], passStderr: true)
        guard result.succeeded else {
            throw SlurmError("`\(binary) merge` failed (exit \(result.status))\(result.stdout.isEmpty ? "" : ": " + result.stdout.slurmTrimmed()); a dgperf without `merge` cannot collect — collect with the dgperf that ran the sweep", exitCode: SlurmError.environment)
        }
        guard let merged = try ShardResultsSummary.load(directory: tmp) else {
            throw SlurmError("`\(binary) merge` wrote no results.json into '\(tmp)'", exitCode: SlurmError.environment)
        }
        if let problem = SlurmCollect.verifyMerge(mergedKeys: merged.cellKeys, shards: shards) {
            throw SlurmError("merge check failed: \(problem); the shards overlap — do not merge them by hand", exitCode: SlurmError.incomplete)
        }
        // results.json last, so a reader never sees new results next to an old table.
        let names = SlurmFiles.list(tmp).filter { $0 != "results.json" } + ["results.json"]
        for name in names where rename(tmp + "/" + name, dir + "/" + name) != 0 {
            throw SlurmError("cannot move '\(tmp)/\(name)' to '\(dir)': \(String(cString: strerror(errno)))", exitCode: SlurmError.environment)
        }
        let hosts = Set((record.placements ?? []).map(\.host)).sorted()
        print("\(dir)/results.json: \(merged.cellKeys.count) cells from \(record.tasks) shard\(record.tasks == 1 ? "" : "s")\(hosts.isEmpty ? "" : " on " + hosts.joined(separator: ", "))\(merged.complete ? ", complete" : ", INCOMPLETE")")
    }
}

/// Output and process helpers shared by the slurm subcommands.
enum SlurmCLI {
    static func err(_ s: String) {
        let bytes = Array((s + "\n").utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress! + off, $0.count - off) }
            if n <= 0 { break }
            off += n
        }
    }

    /// Prints a SlurmError as one line and exits with its code.
    static func reportingErrors(_ body: () throws -> Void) throws {
        do { try body() } catch let e as SlurmError {
            err("dgperf slurm: error: \(e.message)")
            throw ExitCode(e.exitCode)
        }
    }

    static func requireTool(_ name: String) throws -> String {
        guard let path = SlurmProcess.which(name) else {
            throw SlurmError("\(name) is not on PATH: run this on a Slurm submit host (or start a local one: scripts/slurm-local.sh start); --dry-run prints the script without Slurm", exitCode: SlurmError.environment)
        }
        return path
    }

    /// Runs `sbatch --parsable …` and returns the job id.
    static func sbatch(_ argv: [String]) throws -> Int {
        let out = try SlurmProcess.run(argv)
        guard out.succeeded, let id = SlurmQueue.parseSbatchParsable(out.stdout) else {
            let why = (out.stderr + out.stdout).split(separator: "\n").first.map(String.init) ?? "no output"
            throw SlurmError("sbatch failed (exit \(out.status)): \(why)", exitCode: SlurmError.environment)
        }
        return id
    }

    /// Every task status Slurm still has for this directory's jobs: squeue by job name (resubmissions with
    /// plain sbatch included), then sacct for recorded ids when accounting is on. `note` says what was missing.
    static func schedulerStatuses(_ record: SlurmJobRecord, useSacct: Bool) -> (statuses: [SlurmTaskStatus], note: String?) {
        var statuses: [SlurmTaskStatus] = []
        var note: String?
        if useSacct, !record.jobIDs.isEmpty, SlurmProcess.which("sacct") != nil,
           let out = try? SlurmProcess.run(SlurmQueue.sacctArguments(jobIDs: record.jobIDs)), out.succeeded {
            statuses += SlurmQueue.parseSacct(out.stdout)
        }
        if SlurmProcess.which("squeue") != nil {
            if let out = try? SlurmProcess.run(SlurmQueue.squeueArguments(jobName: record.jobName)), out.succeeded {
                statuses += SlurmQueue.parseSqueue(out.stdout)  // after sacct: the fresher view wins ties
            } else {
                note = "squeue failed; shard states come from the shards' files only"
            }
        } else {
            note = "squeue is not on PATH; shard states come from the shards' files only"
        }
        return (statuses, note)
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    static func sleep(seconds: Double) {
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }
}

private extension String {
    func slurmTrimmed() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
