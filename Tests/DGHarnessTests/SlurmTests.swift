import FoundationEssentials
import Glibc
import XCTest
@testable import DGHarness

final class SlurmScriptTests: XCTestCase {
    private func options(_ sweep: [String] = ["--preset", "quick", "--threads", "1,4"], tasks: Int = 3,
                         out: String = "/shared/run 1".replacingSpaces(), dgperf: String = "/opt/dgperf/bin/dgperf",
                         cpus: Int? = nil, exclusive: Bool = false, extra: [String] = [], time: String? = nil) throws -> SlurmSubmitOptions {
        try SlurmSubmitOptions.make(sweepArguments: sweep, tasks: tasks, outputDirectory: out, dgperfPath: dgperf,
                                    workingDirectory: "/home/me/proj", partition: "cpu", constraint: "avx512",
                                    timeLimit: time, cpusPerTask: cpus, exclusive: exclusive, extraSbatchOptions: extra)
    }

    private func assertUsage(_ body: @autoclosure () throws -> Any, mentions: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let e = error as? SlurmError else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertTrue(e.message.contains(mentions), "'\(e.message)' should mention '\(mentions)'", file: file, line: line)
            XCTAssertFalse(e.message.contains("\n"), "one line", file: file, line: line)
            XCTAssertNotEqual(e.exitCode, 0, file: file, line: line)
        }
    }

    func testScriptHasOneTaskPerShardAndCpusFromThreads() throws {
        let o = try options()
        XCTAssertEqual(o.cpusPerTask, 4)
        XCTAssertFalse(o.exclusive)
        let s = SlurmScript.render(o, dgperfVersion: "9.9")
        XCTAssertTrue(s.hasPrefix("#!/bin/bash\n"))
        for line in ["#SBATCH --array=0-2", "#SBATCH --cpus-per-task=4", "#SBATCH --partition=cpu", "#SBATCH --constraint=avx512",
                     "#SBATCH --output=/shared/run_1/logs/shard-%a.job-%A.out", "#SBATCH --job-name=\(o.jobName)",
                     "DGPERF=/opt/dgperf/bin/dgperf", "SHARDS=3", "export DGPERF_SHARD_COUNT=$SHARDS", "cd /home/me/proj"] {
            XCTAssertTrue(s.contains(line + "\n"), "missing line: \(line)")
        }
        XCTAssertFalse(s.contains("--exclusive"))
        XCTAssertTrue(s.contains("exec \"$DGPERF\" sweep --preset quick --threads 1,4 --shard \"$((TASK + 1))/$SHARDS\" --output \"$SHARD_DIR\" --quiet"))
        // Every #SBATCH line comes before the first command (sbatch stops reading them there).
        let lines = s.split(separator: "\n").map(String.init)
        let firstCommand = lines.firstIndex { !$0.hasPrefix("#") }!
        XCTAssertNil(lines[firstCommand...].first { $0.hasPrefix("#SBATCH") })
    }

    func testWholeNodesWhenThreadsUnknownOrAsked() throws {
        let noThreads = try options(["--preset", "full"])
        XCTAssertTrue(noThreads.exclusive)
        XCTAssertNil(noThreads.cpusPerTask)
        XCTAssertTrue(SlurmScript.render(noThreads, dgperfVersion: "x").contains("#SBATCH --exclusive\n"))
        XCTAssertTrue(try options(exclusive: true).exclusive)
        XCTAssertEqual(try options(cpus: 8).cpusPerTask, 8)
        XCTAssertEqual(try options(["--threads=2,16,4"]).cpusPerTask, 16)
    }

    func testSameOptionsSameScript() throws {
        XCTAssertEqual(SlurmScript.render(try options(), dgperfVersion: "1"), SlurmScript.render(try options(), dgperfVersion: "1"))
        XCTAssertNotEqual(try options(out: "/a/run").jobName, try options(out: "/b/run").jobName)
        XCTAssertTrue(try options(out: "/a/run").jobName.hasPrefix("dgperf-run-"))
    }

    func testBadOptions() {
        assertUsage(try options(tasks: 0), mentions: "--tasks 0")
        assertUsage(try options(tasks: -2), mentions: "--tasks -2")
        assertUsage(try options(["--shard", "1/2"]), mentions: "--shard cannot be passed")
        assertUsage(try options(["--output=/x"]), mentions: "--output cannot be passed")
        assertUsage(try options(["--resume"]), mentions: "--resume")
        assertUsage(try options(["--threads", "0,2"]), mentions: "--threads '0,2'")
        assertUsage(try options(["--threads"]), mentions: "--threads needs a value")
        assertUsage(try options(out: "/has space/x"), mentions: "without spaces")
        assertUsage(try options(out: "/pct%x"), mentions: "'%'")
        assertUsage(try options(out: "relative/dir"), mentions: "absolute")
        assertUsage(try options(cpus: 0), mentions: "--cpus-per-task 0")
        assertUsage(try options(cpus: 2, exclusive: true), mentions: "conflict")
        assertUsage(try options(extra: ["--array=0-3"]), mentions: "sets --array")
        assertUsage(try options(extra: ["qos=long"]), mentions: "not an sbatch option")
        assertUsage(try options(extra: ["--qos=long x"]), mentions: "space")
        assertUsage(try options(time: "1h"), mentions: "--time '1h'")
        for good in ["90", "01:30:00", "1-00:00:00", "2-12", "UNLIMITED", "30:00"] { XCTAssertNoThrow(try options(time: good), good) }
    }

    func testArraySpecAndShellQuote() {
        XCTAssertEqual(SlurmScript.arraySpec([3, 1, 2, 7, 9, 8, 1]), "1-3,7-9")
        XCTAssertEqual(SlurmScript.arraySpec([4]), "4")
        XCTAssertEqual(SlurmScript.arraySpec([0, 2]), "0,2")
        XCTAssertEqual(SlurmScript.shellQuote("--models=dense,dg"), "--models=dense,dg")
        XCTAssertEqual(SlurmScript.shellQuote("it's"), "'it'\\''s'")
        XCTAssertEqual(SlurmScript.shellQuote(""), "''")
        XCTAssertEqual(SlurmScript.shellQuote("$HOME `x`"), "'$HOME `x`'")
    }

    /// Runs the generated script with bash as Slurm would (SLURM_ARRAY_TASK_ID set), with a fake dgperf that
    /// records its arguments: checks quoting, the task → shard mapping, the recorded cpuset and resume.
    func testScriptRunsTheRightShardWithExactArguments() throws {
        guard SlurmProcess.which("bash") != nil else { throw XCTSkip("no bash") }
        let dir = try TempDir()
        let fake = dir.path + "/fake-dgperf"
        try SlurmFiles.writeAtomically("#!/bin/bash\n[ \"$1\" = topo ] && exit 1\nprintf '%s\\n' \"$@\" > \"\(dir.path)/args-$SLURM_ARRAY_TASK_ID\"\n", to: fake, mode: 0o755)
        let weird = ["--spec", "/tmp/it's a \"spec\" $HOME.json", "--models", "dense,dg"]
        let o = try SlurmSubmitOptions.make(sweepArguments: weird, tasks: 2, outputDirectory: dir.path + "/out", dgperfPath: fake,
                                            workingDirectory: dir.path)
        try SlurmFiles.makeDirectory(o.outputDirectory)
        try SlurmFiles.writeAtomically(SlurmScript.render(o, dgperfVersion: "t"), to: o.scriptPath, mode: 0o755)

        func runTask(_ id: Int) throws -> SlurmProcess.Output {
            try SlurmProcess.run(["env", "SLURM_ARRAY_TASK_ID=\(id)", "SLURM_JOB_ID=77", "SLURM_ARRAY_JOB_ID=70", "bash", o.scriptPath])
        }
        XCTAssertEqual(try runTask(1).status, 0)
        let args = String(decoding: SlurmFiles.read(dir.path + "/args-1")!, as: UTF8.self).split(separator: "\n").map(String.init)
        XCTAssertEqual(args, ["sweep"] + weird + ["--shard", "2/2", "--output", o.outputDirectory + "/shard-1", "--quiet"])
        let placement = try JSONDecoder().decode(SlurmJobRecord.TaskPlacement.self, from: SlurmFiles.read(o.outputDirectory + "/tasks/task-1.json")!)
        XCTAssertEqual(placement.task, 1)
        XCTAssertEqual(placement.jobId, "77")
        XCTAssertFalse(placement.cpusAllowed.isEmpty)

        // An unfinished shard is resumed; a complete one is left alone.
        try SlurmFiles.makeDirectory(o.outputDirectory + "/shard-0")
        try SlurmFiles.writeAtomically("{\"complete\" : false}", to: o.outputDirectory + "/shard-0/results.json")
        XCTAssertEqual(try runTask(0).status, 0)
        XCTAssertEqual(String(decoding: SlurmFiles.read(dir.path + "/args-0")!, as: UTF8.self).split(separator: "\n").last, "--resume")
        unlink(dir.path + "/args-0")
        try SlurmFiles.writeAtomically("{\"complete\": true}", to: o.outputDirectory + "/shard-0/results.json")
        XCTAssertEqual(try runTask(0).status, 0)
        XCTAssertFalse(SlurmFiles.exists(dir.path + "/args-0"))

        // A task id outside the array, and no task id at all, fail clearly.
        let outside = try runTask(2)
        XCTAssertEqual(outside.status, 2)
        XCTAssertTrue(outside.stderr.contains("outside 0-1"))
        let bare = try SlurmProcess.run(["bash", o.scriptPath])
        XCTAssertNotEqual(bare.status, 0)
        XCTAssertTrue(bare.stderr.contains("sbatch --array=0-1"))
    }
}

final class SlurmQueueTests: XCTestCase {
    func testStates() {
        XCTAssertEqual(SlurmJobState("RUNNING"), .running)
        XCTAssertEqual(SlurmJobState("PD"), .pending)
        XCTAssertEqual(SlurmJobState("CANCELLED by 1000"), .cancelled)
        XCTAssertEqual(SlurmJobState("CANCELLED+"), .cancelled)
        XCTAssertEqual(SlurmJobState("OUT_OF_MEMORY"), .outOfMemory)
        XCTAssertEqual(SlurmJobState("WEIRD"), .other("WEIRD"))
        XCTAssertTrue(SlurmJobState.pending.isActive)
        XCTAssertTrue(SlurmJobState.completing.isActive)
        XCTAssertFalse(SlurmJobState.completed.isActive)
        XCTAssertFalse(SlurmJobState.completed.isFailure)
        XCTAssertTrue(SlurmJobState.timeout.isFailure)
        XCTAssertTrue(SlurmJobState.other("X").isFailure)
    }

    func testParseSqueue() {
        // Real squeue 22.05 output (`--array --states=all --format=%F|%K|%T|%N`), plus a collapsed pending range.
        let out = """
        1|2|PENDING|
        1|1|CANCELLED|vm
        1|0|COMPLETED|vm
        9|[3-5%2]|PENDING|
        7|N/A|RUNNING|vm
        garbage line
        """
        let s = SlurmQueue.parseSqueue(out)
        XCTAssertEqual(s.count, 6)
        XCTAssertEqual(s[0], SlurmTaskStatus(arrayJobID: 1, taskID: 2, state: .pending, nodes: ""))
        XCTAssertEqual(s[1], SlurmTaskStatus(arrayJobID: 1, taskID: 1, state: .cancelled, nodes: "vm"))
        XCTAssertEqual(s[3...].map(\.taskID), [3, 4, 5])
        XCTAssertTrue(SlurmQueue.parseSqueue("").isEmpty)
    }

    func testParseSacct() {
        let out = """
        12_0|COMPLETED|0:0|node1
        12_0.batch|COMPLETED|0:0|node1
        12_1|CANCELLED by 0|0:15|node2
        12_[2-3]|PENDING|0:0|None assigned
        13_1|RUNNING|0:0|node3
        """
        let s = SlurmQueue.parseSacct(out)
        XCTAssertEqual(s.map(\.taskID), [0, 1, 2, 3, 1])
        XCTAssertEqual(s[1].state, .cancelled)
        XCTAssertEqual(s[1].exitCode, "0:15")
        XCTAssertEqual(s[2].nodes, "")
        let latest = SlurmQueue.latestPerTask(s)
        XCTAssertEqual(latest[1]?.arrayJobID, 13, "the resubmission supersedes the cancelled task")
        XCTAssertEqual(latest[1]?.state, .running)
        XCTAssertEqual(latest[0]?.state, .completed)
    }

    func testTaskIDsAndSbatchOutput() {
        XCTAssertEqual(SlurmQueue.taskIDs("0-3"), [0, 1, 2, 3])
        XCTAssertEqual(SlurmQueue.taskIDs("1,4-5"), [1, 4, 5])
        XCTAssertEqual(SlurmQueue.taskIDs("[0-6:2%1]"), [0, 2, 4, 6])
        XCTAssertNil(SlurmQueue.taskIDs("N/A"))
        XCTAssertNil(SlurmQueue.taskIDs("3-1"))
        XCTAssertNil(SlurmQueue.taskIDs(""))
        XCTAssertEqual(SlurmQueue.parseSbatchParsable("1234\n"), 1234)
        XCTAssertEqual(SlurmQueue.parseSbatchParsable("1234;cluster2\n"), 1234)
        XCTAssertNil(SlurmQueue.parseSbatchParsable("sbatch: error: Batch job submission failed\n"))
    }
}

final class SlurmCollectTests: XCTestCase {
    private func record(tasks: Int) throws -> SlurmJobRecord {
        let o = try SlurmSubmitOptions.make(sweepArguments: ["--preset", "quick"], tasks: tasks, outputDirectory: "/r/job",
                                            dgperfPath: "/bin/dgperf", workingDirectory: "/r")
        return SlurmJobRecord(options: o, dgperfVersion: "t")
    }

    func testPlanNamesEachShardAndResubmitsOnlyUnfinished() throws {
        let scheduler: [Int: SlurmTaskStatus] = [
            0: .init(arrayJobID: 5, taskID: 0, state: .completed),
            1: .init(arrayJobID: 5, taskID: 1, state: .cancelled),
            2: .init(arrayJobID: 5, taskID: 2, state: .running),
            3: .init(arrayJobID: 5, taskID: 3, state: .completed),
        ]
        let shards: [Int: ShardResultsSummary] = [
            0: .init(complete: true, cellKeys: ["a", "b"]),
            1: .init(complete: false, cellKeys: ["c"]),
            3: .init(complete: false, cellKeys: []),
        ]
        let plan = SlurmCollect.plan(tasks: 5, scheduler: scheduler, shards: shards)
        XCTAssertEqual(plan.outcomes, [.done(cells: 2), .failed(.cancelled, jobID: 5, partialCells: 1), .active(.running, jobID: 5),
                                       .failed(.completed, jobID: 5, partialCells: 0), .missing(partialCells: 0)])
        XCTAssertEqual(plan.done, [0])
        XCTAssertEqual(plan.active, [2])
        XCTAssertEqual(plan.unfinished, [1, 3, 4])
        XCTAssertFalse(plan.isComplete)
        let lines = plan.problemLines(logDirectory: "/r/job/logs")
        XCTAssertEqual(lines.count, 4)
        XCTAssertTrue(lines[0].hasPrefix("task 1 (shard 2/5): CANCELLED in job 5_1, 1 cell kept"))
        XCTAssertTrue(lines[0].hasSuffix("log: /r/job/logs/shard-1.job-5.out"))
        XCTAssertTrue(lines[2].contains("ended without a complete shard-3/results.json"))
        XCTAssertTrue(lines[3].hasPrefix("task 4 (shard 5/5): missing"))
        let commands = plan.resubmitCommands(dgperf: "/bin/dgperf", record: try record(tasks: 5))
        XCTAssertEqual(commands, ["/bin/dgperf slurm submit --output /r/job --only 1,3-4", "sbatch --array=1,3-4 /r/job/slurm-array.sh"])
    }

    func testCompleteWhenEveryShardIsComplete() {
        let plan = SlurmCollect.plan(tasks: 2, scheduler: [1: .init(arrayJobID: 9, taskID: 1, state: .cancelled)],
                                     shards: [0: .init(complete: true, cellKeys: ["a"]), 1: .init(complete: true, cellKeys: ["b"])])
        XCTAssertTrue(plan.isComplete, "complete results count even if a later duplicate task was cancelled")
        XCTAssertTrue(plan.resubmitCommands(dgperf: "d", record: try! record(tasks: 2)).isEmpty)
    }

    func testVerifyMerge() {
        let shards: [Int: ShardResultsSummary] = [0: .init(complete: true, cellKeys: ["a", "b"]), 1: .init(complete: true, cellKeys: ["c"])]
        XCTAssertNil(SlurmCollect.verifyMerge(mergedKeys: ["a", "c", "b"], shards: shards))
        XCTAssertNotNil(SlurmCollect.verifyMerge(mergedKeys: ["a", "b", "c", "a"], shards: shards)?.contains("twice"))
        XCTAssertEqual(SlurmCollect.verifyMerge(mergedKeys: ["a", "b"], shards: shards)?.contains("1 lost"), true)
        let overlapping: [Int: ShardResultsSummary] = [0: .init(complete: true, cellKeys: ["a"]), 1: .init(complete: true, cellKeys: ["a"])]
        XCTAssertEqual(SlurmCollect.verifyMerge(mergedKeys: ["a"], shards: overlapping)?.contains("more than one shard"), true)
    }

    func testResultsSummaryDecoding() throws {
        let good = #"{"schema":"dgperf.results/1","complete":true,"createdAt":"x","cells":[{"key":"dense b=1","status":"ok","extra":1}]}"#
        XCTAssertEqual(try ShardResultsSummary.decode(Data(good.utf8), path: "p"), ShardResultsSummary(complete: true, cellKeys: ["dense b=1"]))
        XCTAssertThrowsError(try ShardResultsSummary.decode(Data(#"{"schema":"other/2","complete":true,"cells":[]}"#.utf8), path: "p"))
        XCTAssertThrowsError(try ShardResultsSummary.decode(Data("{trunc".utf8), path: "p"))
    }

    func testRecordRoundTripAndLookupByJobID() throws {
        let dir = try TempDir()
        let o = try SlurmSubmitOptions.make(sweepArguments: ["--preset", "quick"], tasks: 2, outputDirectory: dir.path + "/results/run-a",
                                            dgperfPath: "/bin/dgperf", workingDirectory: dir.path)
        try SlurmFiles.makeDirectory(o.outputDirectory)
        var r = SlurmJobRecord(options: o, dgperfVersion: "t")
        r.submissions.append(.init(jobID: 41, taskIDs: [0, 1], submittedAt: "now", submitHost: "h", sbatch: ["sbatch", o.scriptPath]))
        r.submissions.append(.init(jobID: 57, taskIDs: [1], submittedAt: "later", submitHost: "h", sbatch: ["sbatch", "--array=1", o.scriptPath]))
        try r.save()
        XCTAssertEqual(try SlurmJobRecord.load(directory: o.outputDirectory), r)
        XCTAssertEqual(SlurmJobRecord.find(jobID: 57, under: dir.path + "/results"), o.outputDirectory)
        XCTAssertNil(SlurmJobRecord.find(jobID: 58, under: dir.path + "/results"))
        XCTAssertThrowsError(try SlurmJobRecord.load(directory: dir.path)) { e in
            XCTAssertTrue("\(e)".contains("not a directory written by `dgperf slurm submit`"))
        }
        // No temporary file is left next to the record.
        XCTAssertEqual(SlurmFiles.list(o.outputDirectory), [SlurmJobRecord.fileName])
    }

    func testProcessRunnerAndMissingTool() throws {
        let out = try SlurmProcess.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        XCTAssertEqual(out.status, 3)
        XCTAssertEqual(out.stdout, "out\n")
        XCTAssertEqual(out.stderr, "err\n")
        XCTAssertNil(SlurmProcess.which("sbatch", path: "/nonexistent"))
        XCTAssertThrowsError(try SlurmProcess.run(["dgperf-no-such-tool-xyz"])) { e in
            XCTAssertTrue("\(e)".contains("not on PATH"))
        }
    }
}

/// A fresh directory under /tmp, removed (with everything in it) when the object goes away.
final class TempDir {
    let path: String
    init() throws {
        var template = Array("/tmp/dgperf-slurm-test.XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw SlurmError("mkdtemp failed") }
        path = String(cString: p)
    }
    deinit { _ = try? SlurmProcess.run(["rm", "-rf", path]) }
}

private extension String {
    func replacingSpaces() -> String { String(map { $0 == " " ? "_" : $0 }) }
}
