import DGKernels
import DGModels
import DGRuntime
import FoundationEssentials
import Glibc

/// Runs sweep cells in other frameworks in the same run (`--peers numpy,torch`). The runner asks it for
/// every cell after dgperf's own measurement; it returns one record per peer (`impl` set).
public protocol PeerMeasuring: AnyObject {
    /// The peers that can run (requested and importable).
    var implementations: [Implementation] { get }
    /// Records for `cell` run by each of `impls` (a subset of `implementations`). Never throws for a peer
    /// failure (that becomes a skipped record); throws `SweepInterrupted` on Ctrl-C.
    func measure(_ cell: Cell, spec: SweepSpec, impls: [Implementation], peakGflopsPerCore: Double?, now: String) throws -> [CellResult]
    /// Stops workers and removes temporary files.
    func finish()
}

/// Peer outputs vs dgperf's on the same input and masks: max |peer − dgperf| / max |dgperf|.
public struct PeerCrossCheck: Sendable, Equatable {
    public var relativeError: Double
    public var tolerance: Double
    public var passed: Bool { relativeError <= tolerance }

    public init(peer: [Float], reference: [Float], tolerance: Double = 1e-4) {
        self.tolerance = tolerance
        guard peer.count == reference.count, !reference.isEmpty else { relativeError = .infinity; return }
        var diff = 0.0, scale = 0.0
        for (p, r) in zip(peer, reference) {
            let d = abs(Double(p) - Double(r))
            diff = d.isNaN ? .infinity : max(diff, d)
            scale = max(scale, abs(Double(r)))
        }
        relativeError = diff == 0 ? 0 : diff / max(scale, .leastNormalMagnitude)
    }

    /// The note stored in the peer's record ("ok …" or "MISMATCH …").
    public var note: String {
        let e = relativeError.isFinite ? Self.scientific(relativeError) : "∞"
        return passed ? "ok (max |Δ| / max |dgperf| = \(e) ≤ \(Self.scientific(tolerance)))"
                      : "MISMATCH: max |Δ| / max |dgperf| = \(e) > \(Self.scientific(tolerance)) on input variant 0"
    }

    /// "3.1e-07" (two significant digits).
    static func scientific(_ x: Double) -> String {
        guard x > 0, x.isFinite else { return x == 0 ? "0" : "\(x)" }
        var exp = Int(log10(x).rounded(.down))
        var mant = x / pow(10, Double(exp))
        if (mant * 10).rounded() >= 100 { mant /= 10; exp += 1 }
        let m = (mant * 10).rounded() / 10
        let mText = m == m.rounded() ? "\(Int(m)).0" : "\(m)"
        return "\(mText)e\(exp < 0 ? "-" : "+")\(abs(exp) < 10 ? "0" : "")\(abs(exp))"
    }
}

/// The Python peers: one `scripts/peers/peer_worker.py` per thread count (restarted when the cell's thread
/// count changes), fed each cell's weights, masks and inputs through files, driven sample by sample so that
/// dgperf's `RepetitionPolicy` decides warm-up and repetitions and DGStats summarises the samples.
public final class PythonPeers: PeerMeasuring {
    public let requested: [Implementation]
    public private(set) var implementations: [Implementation] = []
    /// One line per peer that cannot run (printed by the CLI; never a failure of the sweep).
    public private(set) var skipped: [String] = []
    public let python: String?
    public let script: String?
    public let tolerance: Double
    let kernels: KernelSet
    let forceCoreType: String?
    let warn: (String) -> Void
    private var worker: PeerWorker?
    private var sessionDirectory: String?
    private var keepSession = false
    private var hello: PeerWorker.Hello?

    /// Starts a worker (with the first thread count of `spec`) to learn which of `requested` can run.
    /// - Parameters:
    ///   - python: interpreter; nil → `PythonPeers.defaultPython()`.
    ///   - script: worker script; nil → scripts/peers/peer_worker.py of the repository.
    ///   - warn: where one-line notices go (stderr in the CLI): skipped peers, cross-check mismatches.
    public init(requested: [Implementation], kernels: KernelSet, spec: SweepSpec, python: String? = nil,
                script: String? = nil, tolerance: Double = 1e-4, environment: [String: String] = Subprocess.environment(),
                warn: @escaping (String) -> Void) {
        self.requested = requested.filter { $0 != .dgperf }
        self.kernels = kernels
        self.tolerance = tolerance
        self.warn = warn
        forceCoreType = kernels.isa == .avx2 ? "Haswell" : nil
        self.python = python ?? PythonPeers.defaultPython(environment: environment)
        self.script = script ?? RepositoryScripts.directory(environment: environment).map { $0 + "/peers/peer_worker.py" }
        guard !self.requested.isEmpty else { return }
        let names = self.requested.map(\.rawValue).joined(separator: ", ")
        guard let py = self.python else {
            skip("peers skipped (\(names)): python3 not found in PATH; install Python 3 with numpy or set DGPERF_PYTHON")
            return
        }
        guard let script = self.script, access(script, R_OK) == 0 else {
            skip("peers skipped (\(names)): scripts/peers/peer_worker.py not found; run from the repository or set DGPERF_ROOT")
            return
        }
        do {
            let w = try startWorker(threads: spec.threads.first ?? 1)
            hello = w.hello
            for impl in self.requested {
                if w.hello.impls.contains(impl.rawValue) {
                    implementations.append(impl)
                } else {
                    skip("\(impl.rawValue) peer skipped: \(w.hello.errors[impl.rawValue] ?? "\(py) cannot run it")")
                }
            }
        } catch {
            skip("peers skipped (\(names)): \(py) \(script) did not start: \(error)")
        }
    }

    deinit { finish() }

    /// DGPERF_PYTHON, else the repository's .venv-peers (scripts/setup-torch.sh), else python3 in PATH.
    public static func defaultPython(environment: [String: String] = Subprocess.environment()) -> String? {
        if let p = environment["DGPERF_PYTHON"], !p.isEmpty { return p }
        if let scripts = RepositoryScripts.directory(environment: environment) {
            let venv = scripts + "/../.venv-peers/bin/python3"
            if access(venv, X_OK) == 0 { return venv }
        }
        return Subprocess.isExecutable("python3", environment: environment) ? "python3" : nil
    }

    /// The BLAS each available peer runs (numpy: build BLAS and OpenBLAS core; torch: BLAS_INFO, CPU capability).
    public var blasSummary: [Implementation: String] { hello.map(blasSummary) ?? [:] }

    private func skip(_ line: String) {
        skipped.append(line)
        warn(line)
    }

    private func session() throws -> String {
        if let sessionDirectory { return sessionDirectory }
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array((base + "/dgperf-peers-XXXXXX").utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw PeerError("cannot create a temporary directory under \(base) for the peers (set TMPDIR to a writable directory)")
        }
        let dir = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        sessionDirectory = dir
        return dir
    }

    private func startWorker(threads: Int) throws -> PeerWorker {
        if let worker, worker.threads == threads { return worker }
        worker?.stop()
        worker = nil
        guard let python, let script else { throw PeerError("no Python interpreter or worker script") }
        let w = try PeerWorker(python: python, script: script, threads: threads,
                               logPath: try session() + "/worker-t\(threads).log", forceCoreType: forceCoreType)
        worker = w
        return w
    }

    public func finish() {
        worker?.stop()
        worker = nil
        if let dir = sessionDirectory {
            if keepSession { warn("peer worker logs kept in \(dir)") } else { try? FileManager.default.removeItem(atPath: dir) }
            sessionDirectory = nil
        }
    }

    public func measure(_ cell: Cell, spec: SweepSpec, impls: [Implementation], peakGflopsPerCore: Double?,
                        now: String) throws -> [CellResult] {
        let impls = impls.filter { implementations.contains($0) }
        guard !impls.isEmpty else { return [] }
        func skippedAll(_ why: String) -> [CellResult] {
            warn("peers skipped for '\(cell.key)': \(why)")
            keepSession = true
            return impls.map { CellResult(cell: cell, status: .skipped, reason: why, measuredAt: now, masks: spec.masks, impl: $0) }
        }
        // The same model (seed), inputs and masks as dgperf's cell; one call records masks and the reference output.
        let engine = GemmEngine(kernels: kernels, executor: SerialExecutor())
        let model: InferenceModel
        do { model = try ModelFactory.synthetic(cell.modelSpec(spec), engine: engine, seed: spec.seed) } catch {
            return impls.map { CellResult(cell: cell, status: .skipped, reason: "\(error)", measuredAt: now, masks: spec.masks, impl: $0) }
        }
        guard let export = model.exportParameters() else { return skippedAll("this model type cannot export its parameters") }
        let batch = cell.batch, classes = spec.classes
        let inputs = KernelCellMeasurer.makeInputs(spec: spec, batch: batch)
        var reference = [Float](repeating: 0, count: batch * classes)
        let report: ForwardReport, masks: [[UInt8]]
        do {
            (report, masks) = try reference.withUnsafeMutableBufferPointer {
                try model.forwardRecordingMasks(input: inputs.pointer, batch: batch, output: $0.baseAddress!)
            }
        } catch { return skippedAll("dgperf's reference forward failed: \(error)") }
        let dir: String, w: PeerWorker, strategies: [String: String]
        do {
            dir = try session() + "/cell"
            try? FileManager.default.removeItem(atPath: dir)
            guard mkdir(dir, 0o700) == 0 else { throw PeerError("cannot create \(dir): \(String(cString: strerror(errno)))") }
            try PeerCellFiles.write(export: export, batch: batch, inputs: inputs.pointer, variants: KernelCellMeasurer.inputVariants,
                                    masks: masks, to: dir)
            w = try startWorker(threads: cell.threads)
            strategies = try w.load(directory: dir)
        } catch {
            if worker?.isRunning == false { worker = nil }
            return skippedAll("\(error)")
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var records: [CellResult] = []
        for impl in impls {
            if Interrupt.requested { throw SweepInterrupted() }
            var notes: [String: String] = ["strategy": strategies[impl.rawValue] ?? "?", "threads": "\(w.threads)",
                                           "pinning": "none (the framework's own threads)",
                                           "python": w.hello.python]
            if let blas = blasSummary(w.hello)[impl] { notes["blas"] = blas }
            if impl == .numpy, forceCoreType == nil { notes["env"] = "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for the peer" }
            if let forceCoreType { notes["env"] = "OPENBLAS_CORETYPE=\(forceCoreType) (AVX2 comparison)" }
            do {
                let outPath = dir + "/\(impl.rawValue).out"
                try w.check(impl: impl, outputPath: outPath)
                let check = PeerCrossCheck(peer: try PeerCellFiles.readFloat32(outPath, count: batch * classes),
                                           reference: reference, tolerance: tolerance)
                notes["crossCheck"] = check.note
                if !check.passed { warn("\(impl.rawValue) peer: \(cell.key): cross-check \(check.note)") }
                let timing = try time(impl, worker: w, policy: spec.repetition, cold: spec.cold)
                records.append(CellResult(cell: cell, status: .ok, measuredAt: now, masks: spec.masks,
                                          peakGflopsPerCore: peakGflopsPerCore, timing: timing, cost: report.cost,
                                          denseCost: model.denseCost(batch: batch), measuredActiveFraction: report.activeFraction,
                                          notes: notes, impl: impl))
            } catch let e as SweepInterrupted {
                throw e
            } catch {
                warn("\(impl.rawValue) peer skipped for '\(cell.key)': \(error)")
                keepSession = true
                if !w.isRunning { worker = nil }  // died or hung (then killed): the next cell starts a fresh one
                records.append(CellResult(cell: cell, status: .skipped, reason: "\(error)", measuredAt: now, masks: spec.masks,
                                          notes: notes, impl: impl))
                if worker == nil { break }
            }
        }
        // Whatever was not reached after the worker died.
        for impl in impls where !records.contains(where: { $0.implementation == impl }) {
            records.append(CellResult(cell: cell, status: .skipped, reason: "peer worker stopped earlier in this cell",
                                      measuredAt: now, masks: spec.masks, impl: impl))
        }
        return records
    }

    private func blasSummary(_ h: PeerWorker.Hello) -> [Implementation: String] {
        var out: [Implementation: String] = [:]
        if let n = h.numpy { out[.numpy] = "numpy \(n.version), \(n.blas), OpenBLAS core \(n.openblasCore)" }
        if let t = h.torch { out[.torch] = "torch \(t.version), BLAS \(t.BLAS_INFO ?? "unknown"), CPU capability \(t.cpuCapability ?? "unknown")" }
        return out
    }

    /// dgperf's repetition policy, applied to the peer: warm-up, inner calls per sample, reps until the CI
    /// target, the budget or max reps.
    private func time(_ impl: Implementation, worker w: PeerWorker, policy: RepetitionPolicy, cold: Bool) throws -> CellTiming {
        let warm = try w.warmUp(impl: impl, calls: policy.warmupCalls, seconds: policy.warmupSeconds)
        let inner = policy.innerCalls(singleCallSeconds: warm.single, cold: cold)
        let flush = cold ? KernelCellMeasurer.flushBytes : 0
        var samples: [Double] = []
        var timed = 0.0
        var stop: RepetitionPolicy.StopReason?
        while stop == nil {
            let t = try w.sample(impl: impl, inner: inner, expectedSeconds: Double(inner) * warm.single, flushBytes: flush)
            samples.append(t / Double(inner))
            timed += t
            if Interrupt.requested { throw SweepInterrupted() }
            stop = policy.stopReason(samples: samples, timedSeconds: timed)
        }
        return CellTiming(samples: samples, innerCalls: inner, warmupCalls: warm.calls, stopReason: stop!)
    }
}

/// `--peers numpy[,torch]`.
public enum PeerSelection {
    public static func parse(_ text: String?) throws -> [Implementation] {
        guard let text else { return [] }
        var out: [Implementation] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let name = String(part).trimmingCharacters().lowercased()
            guard let impl = Implementation(rawValue: name), impl != .dgperf else {
                throw HarnessError.usage("--peers '\(text)': '\(name)' is not a peer; choose numpy or torch, e.g. --peers numpy,torch")
            }
            if !out.contains(impl) { out.append(impl) }
        }
        return out
    }
}
