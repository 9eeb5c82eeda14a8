import DGKernels
import DGModels
import DGReport
import FoundationEssentials
import Glibc
import XCTest
@testable import DGHarness

/// The peers (`--peers numpy,torch`): subprocess plumbing, the worker protocol, the cross-check, records with
/// `impl`, and that a missing or broken Python never fails a sweep. Tests that need numpy skip without it.
final class PeerTests: XCTestCase {
    // MARK: Subprocess

    func testSubprocessPipesInputAndOutputAndReportsExitStatus() throws {
        let p = try Subprocess(["/bin/sh", "-c", "read a; read b; echo \"got:$a+$b\"; echo second; exit 3"],
                               environment: Subprocess.environment(), input: true, stdout: .pipe)
        try p.write("one\ntwo\n")
        XCTAssertEqual(try p.readLine(timeout: 10), "got:one+two")
        XCTAssertEqual(try p.readLine(timeout: 10), "second")
        XCTAssertNil(try p.readLine(timeout: 10), "end of file")
        XCTAssertEqual(p.waitForExit(), 3)
        let (out, status) = try Subprocess.run(["sh", "-c", "printf 'a b'; exit 0"])
        XCTAssertEqual(out, "a b")
        XCTAssertEqual(status, 0)
    }

    func testSubprocessTimeoutDeadChildAndMissingProgramAreErrorsNotCrashes() throws {
        let slow = try Subprocess(["sleep", "5"], environment: Subprocess.environment(), input: true, stdout: .pipe)
        XCTAssertThrowsError(try slow.readLine(timeout: 0.2)) { XCTAssertTrue("\($0)".contains("no answer")) }
        slow.terminate()
        XCTAssertEqual(slow.waitForExit(), 128 + SIGKILL)
        // Writing to a child that exited must be an error, not SIGPIPE killing the test process.
        let gone = try Subprocess(["true"], environment: Subprocess.environment(), input: true)
        gone.waitForExit()
        XCTAssertThrowsError(try { for _ in 0..<64 { try gone.write(String(repeating: "x", count: 1 << 16)) } }())
        XCTAssertThrowsError(try Subprocess(["/nonexistent/program"], environment: [:])) {
            XCTAssertTrue("\($0)".contains("cannot start /nonexistent/program"), "\($0)")
        }
        let env = Subprocess.environment(setting: ["DGPERF_T": "1"], unsetting: ["PATH"])
        XCTAssertEqual(env["DGPERF_T"], "1")
        XCTAssertNil(env["PATH"])
    }

    // MARK: Pure parts

    func testNPYHeaderIsAlignedAndDescribesTheArray() {
        let bytes = NPY.encode(descr: "<f4", shape: [2, 3], payload: [UInt8](repeating: 0, count: 24))
        XCTAssertEqual(Array(bytes[0..<6]), [0x93] + Array("NUMPY".utf8))
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        XCTAssertEqual((10 + headerLength) % 64, 0, "payload starts on a 64-byte boundary")
        let header = String(decoding: bytes[10..<(10 + headerLength)], as: UTF8.self)
        XCTAssertTrue(header.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"), header)
        XCTAssertTrue(header.hasSuffix("\n"))
        XCTAssertEqual(bytes.count, 10 + headerLength + 24)
        let one = String(decoding: NPY.encode(descr: "|u1", shape: [5], payload: []).dropFirst(10), as: UTF8.self)
        XCTAssertTrue(one.contains("'shape': (5,)"), one)
    }

    func testCrossCheckIsRelativeToTheLargestReferenceValue() {
        let ref: [Float] = [10, -20, 0.5]
        XCTAssertEqual(PeerCrossCheck(peer: ref, reference: ref).relativeError, 0)
        let close = PeerCrossCheck(peer: [10, -20.001, 0.5], reference: ref)
        XCTAssertEqual(close.relativeError, 0.001 / 20, accuracy: 1e-7)
        XCTAssertTrue(close.passed)
        XCTAssertTrue(close.note.hasPrefix("ok"), close.note)
        let off = PeerCrossCheck(peer: [10, -20, 0.6], reference: ref)
        XCTAssertFalse(off.passed, "0.1 / 20 = 5e-3 > 1e-4")
        XCTAssertTrue(off.note.hasPrefix("MISMATCH") && off.note.contains("5.0e-03"), off.note)
        XCTAssertFalse(PeerCrossCheck(peer: [10, .nan, 0.5], reference: ref).passed, "NaN never passes")
        XCTAssertFalse(PeerCrossCheck(peer: [10, -20], reference: ref).passed, "wrong length never passes")
        XCTAssertEqual(PeerCrossCheck.scientific(3.14159e-7), "3.1e-07")
        XCTAssertEqual(PeerCrossCheck.scientific(9.96e-5), "1.0e-04")
    }

    func testPeerSelection() throws {
        XCTAssertEqual(try PeerSelection.parse(nil), [])
        XCTAssertEqual(try PeerSelection.parse("numpy"), [.numpy])
        XCTAssertEqual(try PeerSelection.parse("numpy, Torch,numpy"), [.numpy, .torch])
        for bad in ["tensorflow", "numpy,", "dgperf", ""] {
            XCTAssertThrowsError(try PeerSelection.parse(bad)) { e in
                XCTAssertEqual((e as? HarnessError)?.kind, .usage)
                XCTAssertTrue("\(e)".contains("choose numpy or torch"), "\(e)")
            }
        }
    }

    func testRecordsWithoutImplDecodeAsDgperfAndPeerKeysAreDistinct() throws {
        let cell = Cell(model: .dense, hidden: [8], batch: 2, threads: 1)
        var own = CellResult(cell: cell, status: .ok, measuredAt: "t", masks: "synthetic")
        let peer = CellResult(cell: cell, status: .ok, measuredAt: "t", masks: "synthetic", impl: .numpy)
        XCTAssertEqual(own.impl, .dgperf)
        XCTAssertEqual(peer.key, cell.key + " impl=numpy")
        XCTAssertNotEqual(own.key, peer.key)
        own.impl = nil  // a record written before peers existed
        let decoded = try JSONDecoder().decode(CellResult.self, from: try JSONEncoder().encode(own))
        XCTAssertEqual(decoded.implementation, .dgperf)
        XCTAssertFalse(decoded.isPeer)
    }

    // MARK: The real worker (numpy)

    static let root: String = {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)  // …/Tests/DGHarnessTests/PeerTests.swift
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()
    static var workerScript: String { root + "/scripts/peers/peer_worker.py" }

    func requirePython(numpy: Bool) throws {
        let code = numpy ? "import numpy" : "pass"
        guard let (_, status) = try? Subprocess.run(["python3", "-c", code], stderr: .discard), status == 0 else {
            throw XCTSkip(numpy ? "python3 with numpy is not available" : "python3 is not available")
        }
    }

    static func spec(models: [ModelKind] = [.dense]) -> SweepSpec {
        SweepSpec(preset: "test", models: models, hidden: [[17]], batches: [5], activeFractions: [0.5], granularities: [4],
                  maskKinds: [.perSample], threads: [1], inputFeatures: 13, classes: 5, experts: 4, topK: 2,
                  repetition: RepetitionPolicy(warmupCalls: 1, warmupSeconds: 0.001, minSampleSeconds: 1e-4, minReps: 3,
                                               maxReps: 6, budgetSeconds: 0.005))
    }

    func peers() throws -> PythonPeers {
        PythonPeers(requested: [.numpy], kernels: try KernelSet.select(.auto), spec: PeerTests.spec(), python: "python3",
                    script: PeerTests.workerScript, warn: { _ in })
    }

    /// Every model kind and mask path, odd shapes (13 → 17 → 5, G = 4 leaves a partial last gate, two hidden
    /// layers for the gathered K side): numpy's output matches dgperf's within 1e-4 and is timed by the policy.
    func testNumpyWorkerMatchesDgperfOnEveryModelKindAndMaskPath() throws {
        try requirePython(numpy: true)
        let p = try peers()
        defer { p.finish() }
        XCTAssertEqual(p.implementations, [.numpy])
        XCTAssertTrue(p.blasSummary[.numpy]?.contains("OpenBLAS core") == true, "\(p.blasSummary)")
        try checkEveryModelKind(p, impl: .numpy)
    }

    /// The protocol end to end through the runner: dgperf records (fake timings) plus numpy records with `impl`,
    /// derived speedups per implementation, the side-by-side table, and resume not re-running finished peers.
    func testRunnerAddsPeerRecordsAndTableShowsThemSideBySide() throws {
        try requirePython(numpy: true)
        let spec = PeerTests.spec(models: [.dense, .dg])
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = try peers()
        let runner = SweepRunner(spec: spec, shard: nil, store: ResultsStore(directory: dir), measurer: FakeMeasurer())
        runner.peers = p
        let (outcome, results) = try runner.run(environment: testEnvironment())
        XCTAssertEqual(outcome, .completed)
        XCTAssertEqual(results.dgperfCells.map(\.key), spec.expandCells().map(\.key))
        let numpy = results.cells.filter { $0.implementation == .numpy }
        XCTAssertEqual(numpy.count, spec.expandCells().count)
        XCTAssertEqual(results.cells.map(\.implementation), [.dgperf, .numpy, .dgperf, .numpy], "each peer right after its cell")
        let numpyDense = try XCTUnwrap(numpy.first { $0.cell.model == .dense })
        XCTAssertEqual(numpyDense.derived?.speedup, 1, "a peer's speedup is over the same peer's dense run")
        let numpyGated = try XCTUnwrap(numpy.first { $0.cell.model == .dg })
        XCTAssertEqual(try XCTUnwrap(numpyGated.derived?.speedup), numpyDense.timing!.summary.median / numpyGated.timing!.summary.median, accuracy: 1e-12)
        let ownGated = try XCTUnwrap(results.dgperfCells.first { $0.cell.model == .dg })
        let ownDense = try XCTUnwrap(results.dgperfCells.first { $0.cell.model == .dense })
        XCTAssertEqual(try XCTUnwrap(ownGated.derived?.speedup), ownDense.timing!.summary.median / ownGated.timing!.summary.median, accuracy: 1e-12)

        let table = PeerTable.make(results)
        XCTAssertEqual(table.rows.count, 2)
        XCTAssertTrue(table.columnNames.contains("numpy ms") && table.columnNames.contains("dgperf vs numpy [95% CI]"))
        XCTAssertFalse(table.columnNames.contains("torch ms"), "no torch column without torch records")
        XCTAssertEqual(table.rows[0].last, "ok")
        XCTAssertTrue(TableReporter(format: .markdown).render(results).contains("dgperf vs numpy"))
        XCTAssertEqual(EfficiencyTable.make(results).rows.count, 2, "peers stay out of the efficiency table")
        let csv = CSVReporter().render(results).split(separator: "\n")
        XCTAssertEqual(csv.count, 1 + results.cells.count)
        XCTAssertTrue(csv.contains { $0.contains(",numpy,") })

        // Reload from disk and resume: nothing is measured again.
        let stored = try ResultsStore.load(dir)
        XCTAssertEqual(stored.cells.map(\.key), results.cells.map(\.key))
        let again = FakeMeasurer()
        let counting = CountingPeers(implementations: [.numpy])
        let resumed = SweepRunner(spec: spec, shard: nil, store: ResultsStore(directory: dir), measurer: again)
        resumed.peers = counting
        _ = try resumed.run(environment: testEnvironment(), existing: stored)
        XCTAssertEqual(again.calls, [])
        XCTAssertEqual(counting.calls, 0)
    }

    // MARK: Failures stay peer failures

    func testMissingPythonSkipsPeersWithOneLine() throws {
        var warnings: [String] = []
        let p = PythonPeers(requested: [.numpy, .torch], kernels: try KernelSet.select(.auto), spec: PeerTests.spec(),
                            python: "/nonexistent/python3", script: PeerTests.workerScript, warn: { warnings.append($0) })
        XCTAssertEqual(p.implementations, [])
        XCTAssertEqual(warnings.count, 1, "\(warnings)")
        XCTAssertTrue(warnings[0].hasPrefix("peers skipped (numpy, torch)"), warnings[0])
    }

    func testUnimportableTorchIsSkippedAloneWithTheFix() throws {
        try requirePython(numpy: true)
        var warnings: [String] = []
        let p = PythonPeers(requested: [.numpy, .torch], kernels: try KernelSet.select(.auto), spec: PeerTests.spec(),
                            python: "python3", script: try fakeWorker("no_torch", body: Self.fakeBody(impls: ["numpy"],
                                errors: ["torch": "torch is not importable (ModuleNotFoundError); run scripts/setup-torch.sh"])),
                            warn: { warnings.append($0) })
        defer { p.finish() }
        XCTAssertEqual(p.implementations, [.numpy])
        XCTAssertEqual(warnings, ["torch peer skipped: torch is not importable (ModuleNotFoundError); run scripts/setup-torch.sh"])
    }

    /// A worker whose outputs are wrong: the record is kept, its notes say MISMATCH, and a line goes to stderr.
    func testCrossCheckMismatchIsReportedInNotesAndWarning() throws {
        try requirePython(numpy: false)
        var warnings: [String] = []
        let p = PythonPeers(requested: [.numpy], kernels: try KernelSet.select(.auto), spec: PeerTests.spec(), python: "python3",
                            script: try fakeWorker("zeros", body: Self.fakeBody(impls: ["numpy"])), warn: { warnings.append($0) })
        defer { p.finish() }
        let cell = Cell(model: .dense, hidden: [17], batch: 5, threads: 1)
        let r = try XCTUnwrap(try p.measure(cell, spec: PeerTests.spec(), impls: [.numpy], peakGflopsPerCore: nil, now: "t").first)
        XCTAssertEqual(r.status, .ok)
        XCTAssertTrue(r.notes["crossCheck"]?.hasPrefix("MISMATCH") == true, "\(r.notes)")
        XCTAssertTrue(warnings.contains { $0.contains("cross-check MISMATCH") && $0.contains(cell.key) }, "\(warnings)")
        var results = RunResults(spec: PeerTests.spec(), shard: nil, cellFilter: nil, environment: testEnvironment(), now: "t")
        results.cells = [CellResult(cell: cell, status: .ok, measuredAt: "t", masks: "synthetic",
                                    timing: CellTiming(samples: [1e-3, 1e-3, 1e-3], innerCalls: 1, warmupCalls: 1, stopReason: .budget)), r]
        XCTAssertEqual(PeerTable.make(results).rows.first?.last, "numpy MISMATCH")
    }

    /// A worker that dies mid-cell: the peer record is skipped with the worker's last stderr line, the sweep completes.
    func testCrashingWorkerSkipsThePeerNeverTheSweep() throws {
        try requirePython(numpy: false)
        var warnings: [String] = []
        let script = try fakeWorker("crash", body: Self.fakeBody(impls: ["numpy"], crashOn: "load"))
        let p = PythonPeers(requested: [.numpy], kernels: try KernelSet.select(.auto), spec: PeerTests.spec(), python: "python3",
                            script: script, warn: { warnings.append($0) })
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let runner = SweepRunner(spec: PeerTests.spec(), shard: nil, store: ResultsStore(directory: dir), measurer: FakeMeasurer())
        runner.peers = p
        let (outcome, results) = try runner.run(environment: testEnvironment())
        XCTAssertEqual(outcome, .completed)
        XCTAssertEqual(results.dgperfCells.map(\.status), [.ok])
        let peer = try XCTUnwrap(results.cells.first { $0.isPeer })
        XCTAssertEqual(peer.status, .skipped)
        XCTAssertTrue(peer.reason?.contains("boom: simulated crash") == true, peer.reason ?? "")
        XCTAssertTrue(warnings.contains { $0.contains("peers skipped for") }, "\(warnings)")
        // The worker's log is kept for the user (and named); remove it here.
        let kept = try XCTUnwrap(warnings.first { $0.hasPrefix("peer worker logs kept in ") })
        let logDir = String(kept.dropFirst("peer worker logs kept in ".count))
        XCTAssertTrue(AtomicFile.exists(logDir + "/worker-t1.log"))
        try FileManager.default.removeItem(atPath: logDir)
    }

    /// PyTorch (when importable, e.g. after scripts/setup-torch.sh) matches dgperf on every model kind too.
    func testTorchWorkerMatchesDgperfWhenTorchIsInstalled() throws {
        let python = PythonPeers.defaultPython() ?? "python3"
        guard let (_, status) = try? Subprocess.run([python, "-c", "import torch, numpy"], stderr: .discard), status == 0 else {
            throw XCTSkip("torch is not importable by \(python) (opt-in: scripts/setup-torch.sh)")
        }
        let p = PythonPeers(requested: [.torch], kernels: try KernelSet.select(.auto), spec: PeerTests.spec(), python: python,
                            script: PeerTests.workerScript, warn: { _ in })
        defer { p.finish() }
        XCTAssertEqual(p.implementations, [.torch])
        XCTAssertTrue(p.blasSummary[.torch]?.contains("BLAS") == true, "\(p.blasSummary)")
        try checkEveryModelKind(p, impl: .torch)
    }

    // MARK: Helpers

    /// Odd shapes (13 → 17 → 5, G = 4 leaves a partial last gate, two hidden layers for the gathered K side),
    /// every model kind and mask path: the peer's output matches dgperf's within 1e-4 and is timed by the policy.
    func checkEveryModelKind(_ p: PythonPeers, impl: Implementation) throws {
        let spec = PeerTests.spec()
        let cells: [(Cell, String)] = [
            (Cell(model: .dense, hidden: [17], batch: 5, threads: 1), "dense"),
            (Cell(model: .dropout, hidden: [17], batch: 1, threads: 1), "dense"),
            (Cell(model: .dg, hidden: [17], batch: 5, threads: 1, activeFraction: 0.5, granularity: 4, maskKind: .perSample), "dense-then-mask+gate-predictor"),
            (Cell(model: .dg, hidden: [17], batch: 5, threads: 1, activeFraction: 0.5, granularity: 1, maskKind: .shared), "gather+gate-predictor"),
            (Cell(model: .dg, hidden: [17], batch: 1, threads: 1, activeFraction: 0.25, granularity: 4, maskKind: .perSample), "gather+gate-predictor"),
            (Cell(model: .random, hidden: [12, 9], batch: 6, threads: 1, activeFraction: 0.5, granularity: 1, maskKind: .shared), "gather"),
            (Cell(model: .random, hidden: [12, 9], batch: 6, threads: 1, activeFraction: 0.3, granularity: 2, maskKind: .perSample), "dense-then-mask"),
            (Cell(model: .moe, hidden: [16], batch: 7, threads: 1, activeFraction: 0.5, experts: 4, topK: 2), "switch-top2"),
            (Cell(model: .moe, hidden: [16], batch: 9, threads: 1, activeFraction: 0.25, experts: 4, topK: 1), "switch-top1"),
        ]
        for (cell, strategy) in cells {
            var s = spec
            s.experts = cell.experts ?? s.experts; s.topK = cell.topK ?? s.topK
            let records = try p.measure(cell, spec: s, impls: [impl], peakGflopsPerCore: 50, now: "t")
            XCTAssertEqual(records.count, 1)
            let r = try XCTUnwrap(records.first)
            XCTAssertEqual(r.status, .ok, "\(cell.key): \(r.reason ?? "")")
            XCTAssertEqual(r.impl, impl)
            XCTAssertEqual(r.key, cell.key + " impl=\(impl.rawValue)")
            XCTAssertEqual(r.notes["strategy"], strategy, cell.key)
            XCTAssertTrue(r.notes["crossCheck"]?.hasPrefix("ok") == true, "\(cell.key): \(r.notes["crossCheck"] ?? "no check")")
            XCTAssertEqual(r.notes["threads"], "1")
            guard let t = r.timing else { continue }  // the status assertion above already failed
            XCTAssertGreaterThanOrEqual(t.samples.count, 3, "min reps of the policy")
            XCTAssertLessThanOrEqual(t.samples.count, 6, "max reps of the policy")
            XCTAssertTrue(t.samples.allSatisfy { $0 > 0 && $0 < 1 })
            XCTAssertNotNil(r.cost)
        }
    }

    /// A protocol-speaking stand-in for peer_worker.py (no numpy needed): outputs zeros, optional crash.
    static func fakeBody(impls: [String], errors: [String: String] = [:], crashOn: String? = nil) -> String {
        let errs = errors.map { "\"\($0.key)\": \"\($0.value)\"" }.joined(separator: ", ")
        return """
        import json, sys
        for line in sys.stdin:
            req = json.loads(line)
            op = req["op"]
            if op == \(crashOn.map { "\"\($0)\"" } ?? "None"):
                sys.stderr.write("boom: simulated crash\\n"); sys.stderr.flush(); sys.exit(3)
            if op == "quit":
                break
            if op == "hello":
                r = {"python": "3", "threads": 1, "impls": \(impls), "errors": {\(errs)},
                     "numpy": {"version": "fake", "blas": "none", "openblasCore": "none"}}
            elif op == "load":
                h = json.load(open(req["dir"] + "/cell.json"))
                r = {"strategies": {"numpy": "fake"}}
                shape = (h["batch"], h["classes"])
            elif op == "check":
                open(req["out"], "wb").write(b"\\0" * (4 * shape[0] * shape[1]))
                r = {}
            elif op == "warmup":
                r = {"calls": 1, "single": 1e-4}
            elif op == "sample":
                r = {"seconds": 1e-4 * req["inner"]}
            r["ok"] = True
            sys.stdout.write(json.dumps(r) + "\\n"); sys.stdout.flush()
        """
    }

    func fakeWorker(_ name: String, body: String) throws -> String {
        let dir = tempDir()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/\(name).py"
        try AtomicFile.write(body, to: path)
        return path
    }
}

/// Counts peer measurements (resume must not repeat finished ones).
final class CountingPeers: PeerMeasuring {
    let implementations: [Implementation]
    var calls = 0
    init(implementations: [Implementation]) { self.implementations = implementations }
    func measure(_ cell: Cell, spec: SweepSpec, impls: [Implementation], peakGflopsPerCore: Double?, now: String) throws -> [CellResult] {
        calls += 1
        return []
    }
    func finish() {}
}
