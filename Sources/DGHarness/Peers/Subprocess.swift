import FoundationEssentials
import Glibc

/// Why a child process could not be started or talked to.
public struct SubprocessError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A child process started with `posix_spawnp` (no shell: arguments are passed as they are), with
/// optional pipes to its stdin and from its stdout. Used for the optional Python peers.
///
/// The channels are socket pairs, so writing to a child that has died returns an error (`MSG_NOSIGNAL`)
/// instead of raising SIGPIPE in dgperf. Deinit closes them and reaps the child.
public final class Subprocess {
    /// Where the child's stdout / stderr go.
    public enum Output: Equatable, Sendable {
        /// The parent's stream.
        case inherit
        /// A pipe the parent reads (`readLine`, `readToEnd`).
        case pipe
        /// A file, truncated first.
        case file(String)
        /// /dev/null.
        case discard
    }

    public let pid: pid_t
    public let arguments: [String]
    private var inputFD: Int32 = -1
    private var outputFD: Int32 = -1
    private var pending: [UInt8] = []
    private var status: Int32?

    /// Starts `arguments[0]` (looked up in PATH when it has no "/") with exactly `environment`.
    /// - Parameter input: true → a pipe to the child's stdin (`write`); false → /dev/null.
    public init(_ arguments: [String], environment: [String: String], input: Bool = false,
                stdout: Output = .inherit, stderr: Output = .inherit) throws {
        guard let program = arguments.first, !program.isEmpty else { throw SubprocessError("no program to run") }
        self.arguments = arguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var childEnds: [Int32] = []
        defer { for fd in childEnds { close(fd) } }
        var parentEnds: [Int32] = []
        var inFD: Int32 = -1, outFD: Int32 = -1
        func fail(_ what: String) -> SubprocessError {
            for fd in parentEnds { close(fd) }
            return SubprocessError("\(what) failed for \(program): \(String(cString: strerror(errno)))")
        }
        // Socket pairs rather than pipes: SOCK_CLOEXEC is set atomically (pipe2 is not exported to Swift),
        // and send(MSG_NOSIGNAL) never raises SIGPIPE. pair[0] is the parent's end.
        func channel(parentWrites: Bool) throws -> [Int32] {
            var pair: [Int32] = [-1, -1]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
                throw fail("socketpair")
            }
            shutdown(pair[0], Int32(parentWrites ? SHUT_RD : SHUT_WR)); shutdown(pair[1], Int32(parentWrites ? SHUT_WR : SHUT_RD))
            parentEnds.append(pair[0]); childEnds.append(pair[1])
            return pair
        }
        if input {
            let pair = try channel(parentWrites: true)
            inFD = pair[0]
            posix_spawn_file_actions_adddup2(&actions, pair[1], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        func route(_ output: Output, to fd: Int32) throws {
            switch output {
            case .inherit: break
            case .discard: posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_WRONLY, 0)
            case .file(let path): posix_spawn_file_actions_addopen(&actions, fd, path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            case .pipe:
                let p = try channel(parentWrites: false)
                if fd == 1 { outFD = p[0] }
                posix_spawn_file_actions_adddup2(&actions, p[1], fd)
            }
        }
        try route(stdout, to: 1)
        if stderr == .pipe { throw SubprocessError("stderr cannot be a pipe (read deadlock); use .file") }
        try route(stderr, to: 2)
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in argv { free(p) }; for p in envp { free(p) } }
        var child: pid_t = 0
        let rc = posix_spawnp(&child, program, &actions, nil, argv, envp)
        guard rc == 0 else {
            for fd in parentEnds { close(fd) }
            throw SubprocessError("cannot start \(program): \(String(cString: strerror(rc)))")
        }
        pid = child
        inputFD = inFD; outputFD = outFD
    }

    deinit {
        closeInput()
        if outputFD >= 0 { close(outputFD) }
        if status == nil { kill(pid, SIGKILL); _ = waitForExit() }
    }

    /// Writes all of `text` to the child's stdin.
    public func write(_ text: String) throws {
        guard inputFD >= 0 else { throw SubprocessError("\(arguments[0]): stdin is not a pipe or is closed") }
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { send(inputFD, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw SubprocessError("\(arguments[0]) stopped reading its input (\(String(cString: strerror(errno))))") }
            offset += n
        }
    }

    /// The next line of the child's stdout without its newline; nil at end of file.
    /// Throws when `timeout` seconds pass without a complete line.
    public func readLine(timeout: Double? = nil) throws -> String? {
        guard outputFD >= 0 else { throw SubprocessError("\(arguments[0]): stdout is not a pipe") }
        let deadline = timeout.map { Double(monotonicNanos()) * 1e-9 + $0 }
        var scanned = 0
        while true {
            if let nl = pending[scanned...].firstIndex(of: 10) {
                let line = String(decoding: pending[..<nl], as: UTF8.self)
                pending.removeSubrange(...nl)
                return line
            }
            scanned = pending.count
            if let deadline {
                let left = deadline - Double(monotonicNanos()) * 1e-9
                guard left > 0 else { throw SubprocessError("\(arguments[0]) gave no answer within \(Int(timeout!)) s") }
                var p = pollfd(fd: outputFD, events: Int16(POLLIN), revents: 0)
                let r = poll(&p, 1, Int32(min(left * 1000, 1e9).rounded(.up)))
                if r < 0 && errno == EINTR { continue }
                if r == 0 { continue }
            }
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            let n = chunk.withUnsafeMutableBytes { read(outputFD, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                guard !pending.isEmpty else { return nil }
                let line = String(decoding: pending, as: UTF8.self)
                pending = []
                return line
            }
            pending.append(contentsOf: chunk[0..<n])
        }
    }

    /// Everything left on the child's stdout, up to end of file.
    public func readToEnd() -> String {
        var out = pending
        pending = []
        guard outputFD >= 0 else { return String(decoding: out, as: UTF8.self) }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(outputFD, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Closes the child's stdin (it sees end of file).
    public func closeInput() {
        if inputFD >= 0 { close(inputFD); inputFD = -1 }
    }

    /// Waits for the child to exit: its exit code, or 128 + signal number.
    @discardableResult
    public func waitForExit() -> Int32 {
        if let status { return status }
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 {
            if errno != EINTR { raw = 0x7f; break }
        }
        let s: Int32 = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        status = s
        return s
    }

    /// Whether the child has been reaped (`waitForExit` or `terminate` returned).
    public var hasExited: Bool { status != nil }

    /// Kills the child (SIGKILL) and reaps it.
    public func terminate() {
        guard status == nil else { return }
        kill(pid, SIGKILL)
        waitForExit()
    }

    /// Runs a program to completion and returns its stdout and exit status (stderr as given).
    public static func run(_ arguments: [String], environment: [String: String] = Subprocess.environment(),
                           stderr: Output = .inherit) throws -> (output: String, status: Int32) {
        let p = try Subprocess(arguments, environment: environment, stdout: .pipe, stderr: stderr)
        let out = p.readToEnd()
        return (out, p.waitForExit())
    }

    /// This process's environment with `setting` applied and `unsetting` removed.
    public static func environment(setting: [String: String] = [:], unsetting: [String] = []) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        for k in unsetting { env[k] = nil }
        for (k, v) in setting { env[k] = v }
        return env
    }

    /// Whether `name` runs: an executable path, or a name found in PATH.
    public static func isExecutable(_ name: String, environment: [String: String] = Subprocess.environment()) -> Bool {
        if name.contains("/") { return access(name, X_OK) == 0 }
        let path = environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").contains { access("\($0)/\(name)", X_OK) == 0 }
    }
}

/// The repository's `scripts/` folder (peer workers live there): $DGPERF_ROOT/scripts, ./scripts, or the
/// checkout this binary was built from.
public enum RepositoryScripts {
    public static func directory(environment: [String: String] = Subprocess.environment()) -> String? {
        var candidates: [String] = []
        if let root = environment["DGPERF_ROOT"] { candidates.append(root + "/scripts") }
        candidates.append("scripts")
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)  // …/Sources/DGHarness/Subprocess.swift
        if parts.count > 3 { parts.removeLast(3); candidates.append(parts.joined(separator: "/") + "/scripts") }
        return candidates.first { access($0, R_OK) == 0 }
    }
}

import DGRuntime
