import Glibc

/// Runs Slurm's client tools (and `dgperf merge`) with an argv — no shell, so paths and flags are never
/// re-split or expanded.
public enum SlurmProcess {
    public struct Output: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        public var succeeded: Bool { status == 0 }
    }

    /// Full path of `name` on $PATH (or `name` itself when it contains a '/' and is executable).
    public static func which(_ name: String, path: String? = nil) -> String? {
        if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
        let search = path ?? (getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin")
        for dir in search.split(separator: ":") where !dir.isEmpty {
            let candidate = dir + "/" + name
            var st = stat()
            if stat(candidate, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Runs argv[0] (searched on $PATH) and collects stdout and stderr (stderr through a temp file, so neither
    /// pipe can fill up and stall the child). With `passStderr`, the child's stderr goes straight to ours
    /// (progress, notes) instead. Throws when the program cannot start. Built on the harness's `Subprocess`.
    public static func run(_ argv: [String], passStderr: Bool = false) throws -> Output {
        precondition(!argv.isEmpty)
        guard let exe = which(argv[0]) else {
            throw SlurmError("'\(argv[0])' is not on PATH", exitCode: SlurmError.environment)
        }
        let errFile = passStderr ? nil : "/tmp/dgperf-slurm-stderr-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { if let errFile { unlink(errFile) } }
        let process: Subprocess
        do {
            process = try Subprocess([exe] + argv.dropFirst(), environment: Subprocess.environment(),
                                     stdout: .pipe, stderr: errFile.map { .file($0) } ?? .inherit)
        } catch {
            throw SlurmError("cannot run \(exe): \(error)", exitCode: SlurmError.environment)
        }
        let out = process.readToEnd()
        let status = process.waitForExit()
        let err = errFile.flatMap { AtomicFile.readRaw($0) }.map { String(decoding: $0, as: UTF8.self) } ?? ""
        return Output(status: status, stdout: out, stderr: err)
    }
}
