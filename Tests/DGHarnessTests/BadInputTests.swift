import XCTest
@testable import DGHarness

/// Every bad input gives one message naming the problem (checked by substring) and a non-zero exit code,
/// and leaves nothing on disk.
final class BadInputTests: XCTestCase {
    struct Case {
        var name: String
        var edit: (inout SweepRequest) -> Void
        var message: String
        var code: Int32
    }

    static let usage: Int32 = 64, data: Int32 = 65, noInput: Int32 = 66, cannotCreate: Int32 = 73, software: Int32 = 70

    func write(_ text: String, _ name: String) -> String {
        let p = tempDir() + "/" + name
        try! AtomicFile.write(text, to: p)
        return p
    }

    func testBadInputs() throws {
        let root = tempDir()
        let fileAsDir = write("x", "file")
        let readOnly = tempDir()
        chmod(readOnly, 0o500)
        let weightsOld = tempDir()
        try AtomicFile.write("not a weight file", to: weightsOld + "/old.dgw")
        let weightsNoManifest = tempDir()
        let existing = tempDir()
        try AtomicFile.write("{}", to: existing + "/results.json")
        let cases: [Case] = [
            Case(name: "unknown model", edit: { $0.models = "dense,transformer" }, message: "unknown model 'transformer'", code: Self.usage),
            Case(name: "empty model entry", edit: { $0.models = "dense,,dg" }, message: "--models 'dense,,dg' has an empty entry", code: Self.usage),
            Case(name: "active 0", edit: { $0.active = "0.5,0" }, message: "--active 0 is outside (0, 1]", code: Self.usage),
            Case(name: "active > 1", edit: { $0.active = "1.5" }, message: "--active 1.5 is outside (0, 1]", code: Self.usage),
            Case(name: "active negative", edit: { $0.active = "-0.1" }, message: "outside (0, 1]", code: Self.usage),
            Case(name: "active not a number", edit: { $0.active = "half" }, message: "--active: 'half' is not a number", code: Self.usage),
            Case(name: "sparsity 1", edit: { $0.sparsity = "1" }, message: "--sparsity 1 is outside [0, 1)", code: Self.usage),
            Case(name: "sparsity negative", edit: { $0.sparsity = "-0.2" }, message: "--sparsity -0.2 is outside [0, 1)", code: Self.usage),
            Case(name: "active and sparsity", edit: { $0.active = "0.5"; $0.sparsity = "0.5" }, message: "either --active", code: Self.usage),
            Case(name: "batch 0", edit: { $0.batch = "1,0" }, message: "--batch: 0 must be ≥ 1", code: Self.usage),
            Case(name: "batch text", edit: { $0.batch = "big" }, message: "--batch: 'big' is not an integer", code: Self.usage),
            Case(name: "batch huge", edit: { $0.batch = "100000" }, message: "batch size 100000 is out of range", code: Self.usage),
            Case(name: "batch empty", edit: { $0.batch = "" }, message: "has an empty entry", code: Self.usage),
            Case(name: "threads 0", edit: { $0.threads = "0" }, message: "--threads: 0 must be ≥ 1", code: Self.usage),
            Case(name: "hidden 0", edit: { $0.hidden = "0" }, message: "--hidden: 0 must be ≥ 1", code: Self.usage),
            Case(name: "hidden huge", edit: { $0.hidden = "100000" }, message: "hidden width 100000 is out of range", code: Self.usage),
            // 64 layers of 65536 units: 2.7e11 parameters, petabytes, more than any machine: refused before anything runs.
            Case(name: "model beyond memory", edit: { $0.hidden = "65536"; $0.layers = 64; $0.models = "dense" },
                 message: "needs about", code: Self.usage),
            Case(name: "layers 0", edit: { $0.layers = 0 }, message: "--layers must be 1…64", code: Self.usage),
            Case(name: "granularity 0", edit: { $0.granularity = "0" }, message: "--granularity: 0 must be ≥ 1", code: Self.usage),
            Case(name: "granularity wider than layer", edit: { $0.granularity = "4096" }, message: "granularity 4096 is out of range", code: Self.usage),
            Case(name: "unknown mask", edit: { $0.mask = "diagonal" }, message: "unknown mask kind 'diagonal'", code: Self.usage),
            Case(name: "unknown preset", edit: { $0.preset = "huge" }, message: "unknown preset 'huge'", code: Self.usage),
            Case(name: "bad isa", edit: { $0.isa = "neon" }, message: "--isa must be one of", code: Self.usage),
            Case(name: "min reps 0", edit: { $0.minReps = 0 }, message: "--min-reps must be ≥ 1", code: Self.usage),
            Case(name: "max < min reps", edit: { $0.minReps = 10; $0.maxReps = 5 }, message: "--max-reps (5) must be ≥ --min-reps (10)", code: Self.usage),
            Case(name: "budget 0", edit: { $0.budget = "0" }, message: "--budget must be a positive number", code: Self.usage),
            Case(name: "target ci 150%", edit: { $0.targetCI = "150%" }, message: "--target-ci must be in (0, 1)", code: Self.usage),
            Case(name: "seed negative", edit: { $0.seed = "-1" }, message: "--seed '-1' is not a non-negative integer", code: Self.usage),
            Case(name: "shard format", edit: { $0.shard = "2-4" }, message: "--shard '2-4' is not of the form K/N", code: Self.usage),
            Case(name: "shard out of range", edit: { $0.shard = "5/4" }, message: "need 1 ≤ K ≤ N", code: Self.usage),
            Case(name: "shard zero", edit: { $0.shard = "0/2" }, message: "need 1 ≤ K ≤ N", code: Self.usage),
            Case(name: "more shards than groups", edit: { $0.preset = "quick"; $0.shard = "9/9" }, message: "holds no cells", code: Self.usage),
            Case(name: "output under a file", edit: { $0.output = fileAsDir + "/out" }, message: "cannot create output directory", code: Self.cannotCreate),
            Case(name: "output exists", edit: { $0.output = existing }, message: "already holds a results.json", code: Self.cannotCreate),
            Case(name: "resume missing", edit: { $0.output = root + "/nothing"; $0.resume = true }, message: "does not exist", code: Self.noInput),
            Case(name: "resume none under root", edit: { $0.resume = true; $0.resultsRoot = root + "/empty" }, message: "no interrupted sweep", code: Self.noInput),
            Case(name: "resume damaged file", edit: { $0.output = existing; $0.resume = true }, message: "has no \"schema\" field", code: Self.data),
            Case(name: "spec file missing", edit: { $0.specFile = root + "/none.json" }, message: "does not exist", code: Self.noInput),
            Case(name: "spec file malformed", edit: { $0.specFile = self.write("{\"batches\": [1, 2", "s.json") }, message: "is not a JSON object", code: Self.data),
            Case(name: "spec file unknown field", edit: { $0.specFile = self.write("{\"batch\": [1]}", "s.json") }, message: "unknown field 'batch'", code: Self.data),
            Case(name: "spec file wrong type", edit: { $0.specFile = self.write("{\"batches\": [\"one\"]}", "s.json") }, message: "field 'batches[0]': expected an integer", code: Self.data),
            Case(name: "spec file bad value", edit: { $0.specFile = self.write("{\"activeFractions\": [2]}", "s.json") }, message: "active fraction 2.0 is outside (0, 1]", code: Self.usage),
            Case(name: "spec file unknown preset", edit: { $0.specFile = self.write("{\"preset\": \"x\"}", "s.json") }, message: "unknown preset 'x'", code: Self.data),
            Case(name: "spec and preset", edit: { $0.specFile = self.write("{}", "s.json"); $0.preset = "quick" }, message: "either --preset or --spec", code: Self.usage),
            Case(name: "weights missing", edit: { $0.weights = root + "/w" }, message: "is not a directory", code: Self.noInput),
            Case(name: "weights without .dgw files", edit: { $0.weights = weightsNoManifest }, message: "holds no .dgw weight files", code: Self.data),
            Case(name: "weights: foreign or corrupt file", edit: { $0.weights = weightsOld }, message: "is not a dgperf weight file", code: Self.data),
            Case(name: "cells-from unknown key", edit: { $0.cellsFrom = self.write("dense h=1 b=1 t=1\n", "k.txt") }, message: "is not part of this sweep", code: Self.data),
            Case(name: "cells-from empty", edit: { $0.cellsFrom = self.write("\n# nothing\n", "k.txt") }, message: "lists no cell keys", code: Self.data),
        ]
        XCTAssertGreaterThanOrEqual(cases.count, 30)
        for c in cases {
            var req = SweepRequest()
            req.resultsRoot = root + "/results"
            c.edit(&req)
            do {
                let resolved = try req.resolve(hostname: "h", stamp: "s")
                // Output problems surface when the directory is prepared (still before any results file).
                try AtomicFile.makeWritableDirectory(resolved.outputDirectory)
                XCTFail("\(c.name): accepted")
            } catch let e as HarnessError {
                XCTAssertTrue(e.message.contains(c.message), "\(c.name): message was: \(e.message)")
                XCTAssertEqual(e.exitCode, c.code, "\(c.name): \(e.message)")
                XCTAssertNotEqual(e.exitCode, 0)
            } catch {
                XCTFail("\(c.name): unexpected \(error)")
            }
        }
        XCTAssertFalse(AtomicFile.exists(root + "/results"), "bad input never creates the results directory")
        // Unwritable output directory (skipped when running as root, which can write anyway).
        if geteuid() != 0 {
            var req = SweepRequest(); req.output = readOnly + "/out"
            XCTAssertThrowsError(try AtomicFile.makeWritableDirectory(try req.resolve().outputDirectory)) { e in
                XCTAssertEqual((e as! HarnessError).exitCode, Self.cannotCreate)
            }
        }
        XCTAssertThrowsError(try AtomicFile.makeWritableDirectory("/proc/dgperf-results")) { e in
            XCTAssertEqual((e as! HarnessError).exitCode, Self.cannotCreate)
        }
    }

    func testResultsFileErrors() throws {
        let dir = tempDir()
        XCTAssertThrowsError(try ResultsStore.load(dir + "/none.json")) { XCTAssertEqual(($0 as! HarnessError).exitCode, Self.noInput) }
        try AtomicFile.write("{\"schema\": \"dgperf.results/0\"}", to: dir + "/old.json")
        XCTAssertThrowsError(try ResultsStore.load(dir + "/old.json")) { e in
            XCTAssertTrue((e as! HarnessError).message.contains("uses schema 'dgperf.results/0'"))
            XCTAssertEqual((e as! HarnessError).exitCode, Self.data)
        }
        try AtomicFile.write("not json", to: dir + "/bad.json")
        XCTAssertThrowsError(try ResultsStore.load(dir + "/bad.json")) { XCTAssertTrue(($0 as! HarnessError).message.contains("is not valid JSON")) }
        try AtomicFile.write("{\"schema\": \"dgperf.results/1\", \"cells\": 3}", to: dir + "/damaged.json")
        XCTAssertThrowsError(try ResultsStore.load(dir + "/damaged.json")) { XCTAssertTrue(($0 as! HarnessError).message.contains("damaged results file")) }
        XCTAssertThrowsError(try Compare.parseThreshold("150%", flag: "--threshold"))
        XCTAssertThrowsError(try Compare.parseMetricThreshold("latency=5%")) { XCTAssertTrue(($0 as! HarnessError).message.contains("unknown metric 'latency'")) }
        XCTAssertThrowsError(try Compare.parseMetricThreshold("time")) { XCTAssertTrue(($0 as! HarnessError).message.contains("METRIC=VALUE")) }
        let r = try fakeRun()
        var other = r; other.spec.batches = [7]
        XCTAssertThrowsError(try Merge.merge([("a", r), ("b", other)])) { XCTAssertTrue(($0 as! HarnessError).message.contains("different sweep")) }
    }
}

import Glibc

/// The memory guard: the largest model of a sweep against the memory available, before anything runs.
final class MemoryCheckTests: XCTestCase {
    func testLargestModelAndTheCheck() throws {
        var spec = SweepPreset.quick.spec
        spec.models = [.dense, .dg]; spec.hidden = [[512], [2048, 2048]]; spec.batches = [1, 256]; spec.granularities = [16, 1]
        let largest = spec.largestModel()
        XCTAssertEqual(largest.spec.hidden, [2048, 2048])
        XCTAssertEqual(largest.spec.kind, .dg)  // the gate predictor adds parameters
        XCTAssertEqual(largest.spec.granularity, 1)
        XCTAssertEqual(largest.batch, 256)
        XCTAssertEqual(largest.bytes, largest.spec.estimatedMemoryBytes(batch: 256))
        XCTAssertNoThrow(try spec.checkMemory(available: nil))
        XCTAssertNoThrow(try spec.checkMemory(available: largest.bytes))
        XCTAssertThrowsError(try spec.checkMemory(available: largest.bytes - 1)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("dg model 784→2048→2048→10 at batch 256 (6050314 parameters"), text)
            XCTAssertTrue(text.contains("needs about 0.1 GB but this machine has 0.1 GB available"), text)
            XCTAssertTrue(text.contains("use smaller --hidden"), text)
            XCTAssertEqual((error as? HarnessError)?.kind, .usage)
        }
    }
}
