import FoundationEssentials
import Glibc

/// DIR/slurm-job.json: what `dgperf slurm submit` sent to Slurm (every submission, resubmissions
/// included) and, after `collect`, where each task ran and which CPUs it was allowed to use.
public struct SlurmJobRecord: Codable, Equatable, Sendable {
    public static let currentSchema = "dgperf.slurm-job/1"
    public static let fileName = "slurm-job.json"

    public struct Submission: Codable, Equatable, Sendable {
        public var jobID: Int
        public var taskIDs: [Int]
        public var submittedAt: String
        public var submitHost: String
        /// The sbatch command line (script path last).
        public var sbatch: [String]
        public init(jobID: Int, taskIDs: [Int], submittedAt: String, submitHost: String, sbatch: [String]) {
            self.jobID = jobID; self.taskIDs = taskIDs; self.submittedAt = submittedAt; self.submitHost = submitHost; self.sbatch = sbatch
        }
    }

    /// Written by the task itself (DIR/tasks/task-i.json) before the sweep starts.
    public struct TaskPlacement: Codable, Equatable, Sendable {
        public var task: Int
        public var jobId: String
        public var arrayJobId: String
        public var host: String
        /// /proc/self/status Cpus_allowed_list inside the task: the cpuset Slurm gave it.
        public var cpusAllowed: String
        public var slurmCpusPerTask: String
        public var slurmJobCpusPerNode: String
        public var startedAt: String
    }

    public var schema: String
    public var outputDirectory: String
    public var dgperf: String
    public var dgperfVersion: String
    public var workingDirectory: String
    public var tasks: Int
    public var sweepArguments: [String]
    public var script: String
    public var jobName: String
    public var cpusPerTask: Int?
    public var exclusive: Bool
    public var submissions: [Submission]
    public var placements: [TaskPlacement]?

    public init(options: SlurmSubmitOptions, dgperfVersion: String) {
        schema = Self.currentSchema
        outputDirectory = options.outputDirectory; dgperf = options.dgperfPath; self.dgperfVersion = dgperfVersion
        workingDirectory = options.workingDirectory; tasks = options.tasks; sweepArguments = options.sweepArguments
        script = options.scriptPath; jobName = options.jobName; cpusPerTask = options.cpusPerTask
        exclusive = options.exclusive; submissions = []; placements = nil
    }

    public static func path(in directory: String) -> String { directory + "/" + fileName }

    public static func load(directory: String) throws -> SlurmJobRecord {
        let path = path(in: directory)
        guard let data = SlurmFiles.read(path) else {
            throw SlurmError("'\(directory)' has no \(fileName): it is not a directory written by `dgperf slurm submit`; pass the submit --output DIR or its job id", exitCode: SlurmError.usage)
        }
        let record: SlurmJobRecord
        do { record = try JSONDecoder().decode(SlurmJobRecord.self, from: data) } catch {
            throw SlurmError("'\(path)' is not a dgperf slurm job record (\(error)); it was edited or truncated — resubmit into a new --output", exitCode: SlurmError.usage)
        }
        guard record.schema == currentSchema else {
            throw SlurmError("'\(path)' has schema '\(record.schema)', this dgperf reads '\(currentSchema)'; collect it with the dgperf that submitted it", exitCode: SlurmError.usage)
        }
        return record
    }

    public func save() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try SlurmFiles.writeAtomically(try encoder.encode(self), to: Self.path(in: outputDirectory))
    }

    /// Every job id submitted for this directory, oldest first.
    public var jobIDs: [Int] { submissions.map(\.jobID) }

    /// The newest directory directly under `root` whose record lists `jobID` (e.g. root "results").
    public static func find(jobID: Int, under root: String) -> String? {
        let dirs = SlurmFiles.list(root).sorted(by: >).map { root + "/" + $0 }
        return dirs.first { dir in
            guard let data = SlurmFiles.read(path(in: dir)),
                  let record = try? JSONDecoder().decode(SlurmJobRecord.self, from: data) else { return false }
            return record.jobIDs.contains(jobID)
        }
    }

    /// What the tasks wrote to DIR/tasks/task-i.json (tasks that have not started yet are absent).
    public func readPlacements() -> [TaskPlacement] {
        (0..<tasks).compactMap { i in
            SlurmFiles.read(outputDirectory + "/tasks/task-\(i).json").flatMap { try? JSONDecoder().decode(TaskPlacement.self, from: $0) }
        }
    }
}

/// Small file and process-identity helpers for the Slurm commands (no full Foundation).
public enum SlurmFiles {
    public static func read(_ path: String) -> Data? { AtomicFile.readRaw(path).map { Data($0) } }

    public static func writeAtomically(_ text: String, to path: String, mode: mode_t = 0o644) throws {
        try writeAtomically(Data(text.utf8), to: path, mode: mode)
    }

    /// `AtomicFile.writeRaw` (temp file, fsync, rename) with the Slurm commands' error.
    public static func writeAtomically(_ data: Data, to path: String, mode: mode_t = 0o644) throws {
        let e = data.withUnsafeBytes { AtomicFile.writeRaw($0, to: path, mode: mode) }
        guard e == 0 else {
            throw SlurmError("cannot write '\(path)': \(String(cString: strerror(e))); choose a writable --output", exitCode: SlurmError.environment)
        }
    }

    public static func exists(_ path: String) -> Bool { AtomicFile.exists(path) }

    /// Names in a directory (no "." or ".."); empty when it cannot be read.
    public static func list(_ directory: String) -> [String] { AtomicFile.list(directory) }

    /// Removes a directory holding only plain files (a temporary merge directory).
    public static func removeFlatDirectory(_ directory: String) {
        for name in list(directory) { unlink(directory + "/" + name) }
        rmdir(directory)
    }

    public static func isDirectory(_ path: String) -> Bool { AtomicFile.isDirectory(path) }

    /// mkdir -p.
    public static func makeDirectory(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") {
            prefix += part + "/"
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw SlurmError("cannot create directory '\(prefix)': \(String(cString: strerror(errno))); choose another --output", exitCode: SlurmError.environment)
            }
        }
        guard isDirectory(path) else {
            throw SlurmError("'\(path)' exists and is not a directory; choose another --output", exitCode: SlurmError.environment)
        }
    }

    /// Absolute path of the running executable (/proc/self/exe).
    public static func currentExecutable() -> String? {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func currentDirectory() -> String {
        guard let p = getcwd(nil, 0) else { return "/" }
        defer { free(p) }
        return String(cString: p)
    }

    /// `path` made absolute against the current directory, with "." and ".." segments resolved.
    public static func absolute(_ path: String) -> String {
        let full = path.hasPrefix("/") ? path : currentDirectory() + "/" + path
        var parts: [Substring] = []
        for p in full.split(separator: "/") {
            if p == "." { continue }
            if p == ".." { if !parts.isEmpty { parts.removeLast() }; continue }
            parts.append(p)
        }
        return "/" + parts.joined(separator: "/")
    }

    public static func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, 255) == 0 else { return "unknown-host" }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// "2025-01-31T12:34:56Z".
    public static func isoNow() -> String { utcNow(iso: true) }

    /// "20250131-123456" for directory names.
    public static func stampNow() -> String { utcNow(iso: false) }

    private static func utcNow(iso: Bool) -> String {
        var t = time(nil)
        var tm = tm()
        gmtime_r(&t, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let date = [String(tm.tm_year + 1900), two(tm.tm_mon + 1), two(tm.tm_mday)].joined(separator: iso ? "-" : "")
        let clock = [two(tm.tm_hour), two(tm.tm_min), two(tm.tm_sec)].joined(separator: iso ? ":" : "")
        return iso ? "\(date)T\(clock)Z" : "\(date)-\(clock)"
    }
}
