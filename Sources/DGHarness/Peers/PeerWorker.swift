import FoundationEssentials
import Glibc

/// A failure of the Python peer (not of the sweep): the message names what went wrong and the fix.
public struct PeerError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One running `scripts/peers/peer_worker.py` for one thread count, spoken to with one JSON object per
/// line (protocol in the script's docstring). Its stderr goes to `logPath`, whose tail is quoted in errors.
public final class PeerWorker {
    /// The worker's answer to "hello": what it can run and with which BLAS.
    public struct Hello: Decodable, Sendable {
        public struct NumpyInfo: Decodable, Sendable { public var version: String; public var blas: String; public var openblasCore: String }
        public struct TorchInfo: Decodable, Sendable {
            public var version: String
            public var threads: Int
            public var BLAS_INFO: String?
            public var cpuCapability: String?
        }
        public var python: String
        public var threads: Int
        public var impls: [String]
        public var errors: [String: String]
        public var cpus: [Int]?
        public var numpy: NumpyInfo?
        public var torch: TorchInfo?
    }

    /// Everything a request may carry (unset fields are omitted from the JSON line).
    struct Request: Encodable {
        var op: String
        var dir: String?
        var impl: String?
        var out: String?
        var calls: Int?
        var seconds: Double?
        var inner: Int?
        var flushBytes: Int?
    }

    struct Reply: Decodable {
        var ok: Bool
        var error: String?
        var seconds: Double?
        var single: Double?
        var calls: Int?
        var strategies: [String: String]?
    }

    public let threads: Int
    public let hello: Hello
    public let logPath: String
    private let process: Subprocess

    /// Starts the worker with `threads` BLAS/OpenMP/torch threads. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are
    /// removed for this process only (set globally on some machines, they slow numpy down), except that
    /// `forceCoreType` (e.g. "Haswell" for an AVX2 comparison) is applied when given.
    public init(python: String, script: String, threads: Int, logPath: String, forceCoreType: String? = nil,
                startTimeout: Double = 180) throws {
        var env = Subprocess.environment(
            setting: ["OPENBLAS_NUM_THREADS": "\(threads)", "OMP_NUM_THREADS": "\(threads)", "MKL_NUM_THREADS": "\(threads)",
                      "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"],
            unsetting: ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"])
        if let forceCoreType { env["OPENBLAS_CORETYPE"] = forceCoreType }
        self.threads = threads
        self.logPath = logPath
        do {
            process = try Subprocess([python, script, "--threads", "\(threads)"], environment: env, input: true,
                                     stdout: .pipe, stderr: .file(logPath))
        } catch let e as SubprocessError {
            throw PeerError(e.message)
        }
        var hello: Hello?
        do {
            let line = try PeerWorker.exchange(process, Request(op: "hello"), timeout: startTimeout, log: logPath)
            hello = try? JSONDecoder().decode(Hello.self, from: Data(line.utf8))
        } catch let e as PeerError {
            process.terminate()
            throw e
        }
        guard let hello else {
            process.terminate()
            throw PeerError("\(script) answered 'hello' with something that is not its protocol\(PeerWorker.logTail(logPath))")
        }
        self.hello = hello
    }

    deinit { stop() }

    /// False once the worker exited or was killed after a protocol failure.
    public var isRunning: Bool { !process.hasExited }

    /// Asks the worker to quit and reaps it.
    public func stop() {
        try? process.write("{\"op\":\"quit\"}\n")
        process.closeInput()
        process.waitForExit()
    }

    /// Loads a cell written by `PeerCellFiles`; returns each impl's strategy.
    public func load(directory: String) throws -> [String: String] {
        try call(Request(op: "load", dir: directory), timeout: 300).strategies ?? [:]
    }

    /// One forward on input variant 0, written to `outputPath` as raw float32.
    public func check(impl: Implementation, outputPath: String) throws {
        _ = try call(Request(op: "check", impl: impl.rawValue, out: outputPath), timeout: 300)
    }

    /// Warm-up calls; returns (calls made, seconds of one more call).
    public func warmUp(impl: Implementation, calls: Int, seconds: Double) throws -> (calls: Int, single: Double) {
        let r = try call(Request(op: "warmup", impl: impl.rawValue, calls: calls, seconds: seconds), timeout: 300 + 20 * seconds)
        guard let n = r.calls, let s = r.single else { throw PeerError("peer worker: warm-up reply without calls/single") }
        return (n, s)
    }

    /// Seconds for `inner` back-to-back calls (after writing `flushBytes` of memory when > 0).
    public func sample(impl: Implementation, inner: Int, expectedSeconds: Double, flushBytes: Int) throws -> Double {
        let r = try call(Request(op: "sample", impl: impl.rawValue, inner: inner, flushBytes: flushBytes > 0 ? flushBytes : nil),
                         timeout: 120 + 50 * expectedSeconds)
        guard let s = r.seconds, s.isFinite, s >= 0 else { throw PeerError("peer worker: sample reply without seconds") }
        return s
    }

    func call(_ request: Request, timeout: Double) throws -> Reply {
        let line = try PeerWorker.exchange(process, request, timeout: timeout, log: logPath)
        guard let reply = try? JSONDecoder().decode(Reply.self, from: Data(line.utf8)) else {
            throw PeerError("peer worker answered '\(request.op)' with a line that is not its protocol: \(line.prefix(200))")
        }
        guard reply.ok else { throw PeerError("peer worker: \(request.op) failed: \(reply.error ?? "no reason given")") }
        return reply
    }

    static func exchange(_ process: Subprocess, _ request: Request, timeout: Double, log: String) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let text = String(decoding: try encoder.encode(request), as: UTF8.self)
        do {
            try process.write(text + "\n")
            guard let line = try process.readLine(timeout: timeout) else {
                let status = process.waitForExit()
                throw PeerError("peer worker exited (status \(status)) during '\(request.op)'\(logTail(log))")
            }
            return line
        } catch let e as SubprocessError {
            process.terminate()
            throw PeerError("peer worker: \(e.message) during '\(request.op)'\(logTail(log))")
        }
    }

    /// ": <last line of the worker's stderr>" or "".
    static func logTail(_ path: String) -> String {
        guard let data = FileManager.default.contents(atPath: path) else { return "" }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").map { String($0).trimmingCharacters() }.filter { !$0.isEmpty }
        guard let last = lines.last else { return "" }
        return ": \(last.prefix(300)) (log: \(path))"
    }
}
