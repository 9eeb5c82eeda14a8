import DGKernels
import DGRuntime
import Foundation
import XCTest
@testable import DGModels

final class WeightFileTests: XCTestCase {
    var dir: String!
    override func setUp() {
        dir = NSTemporaryDirectory() + "dgmodels-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func saved(_ spec: ModelSpec, storage: WeightFile.Storage = .f32) throws -> (Network, String) {
        let net = try Network(spec: spec, seed: 3)
        let path = dir + "/m.dgw"
        var cfg = TrainingConfig(); cfg.lambda = 0.05
        try WeightFile.write(network: net, training: cfg, metrics: TrainingMetrics(testAccuracy: 0.9), storage: storage, seed: 3, to: path)
        return (net, path)
    }

    func testRoundTripEveryKind() throws {
        for kind in ModelKind.allCases {
            let (net, path) = try saved(ModelSpec(kind: kind, inputFeatures: 12, hidden: [16], classes: 3, activeFraction: 0.5))
            let back = try WeightFile.read(path: path)
            XCTAssertEqual(back.header.spec, net.spec)
            XCTAssertEqual(back.header.training.lambda, 0.05)
            XCTAssertEqual(back.header.metrics.testAccuracy, 0.9)
            for p in net.params { XCTAssertEqual(back.network.param(p.name).values, p.values, "\(kind) \(p.name)") }
            XCTAssertNoThrow(try ModelFactory.load(path, engine: makeEngine()))
            XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".tmp.\(getpid())"), "temp file renamed away")
        }
    }

    func testHalfPrecisionStorage() throws {
        let (net, path) = try saved(ModelSpec(kind: .dg, inputFeatures: 12, hidden: [16], classes: 3), storage: .f16)
        let back = try WeightFile.read(path: path)
        for p in net.params {
            for (a, b) in zip(back.network.param(p.name).values, p.values) { XCTAssertEqual(a, b, accuracy: abs(b) * 1e-3 + 1e-4) }
        }
    }

    func testCorruptTruncatedAndForeignFilesAreRejected() throws {
        let (_, path) = try saved(ModelSpec(kind: .dense, inputFeatures: 12, hidden: [16], classes: 3))
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        func expect(_ bytes: Data, _ check: (WeightFileError) -> Bool, _ what: String) throws {
            try bytes.write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try WeightFile.read(path: path), what) { e in
                guard let w = e as? WeightFileError else { return XCTFail("\(what): \(e)") }
                XCTAssertTrue(check(w), "\(what): \(w)")
                XCTAssertFalse(w.description.isEmpty)
            }
        }
        var flipped = good; flipped[good.count / 2] ^= 0x40
        try expect(flipped, { if case .checksum = $0 { return true }; return false }, "bit flip")
        try expect(good.prefix(good.count - 100), { if case .checksum = $0 { return true }; if case .truncated = $0 { return true }; return false }, "truncated")
        try expect(good.prefix(10), { if case .truncated = $0 { return true }; return false }, "header only")
        try expect(Data("hello, this is not a weight file".utf8), { if case .notAWeightFile = $0 { return true }; return false }, "foreign")
        var v2 = good; v2[8] = 2
        try expect(v2, { if case .unsupportedVersion = $0 { return true }; return false }, "future version")
        XCTAssertThrowsError(try WeightFile.read(path: dir + "/nope.dgw")) { XCTAssertEqual($0 as? WeightFileError, .missing(self.dir + "/nope.dgw")) }
        // A well-formed file (valid checksum) whose header claims a model far larger than its payload: refused as
        // truncated before the claimed parameters are allocated (2·10⁹ hidden units would be ~200 GB).
        let m = WeightFile.magic.count
        let raw = [UInt8](good)
        let headerLength = Int(raw[m + 4]) | Int(raw[m + 5]) << 8 | Int(raw[m + 6]) << 16 | Int(raw[m + 7]) << 24
        let header = String(decoding: raw[(m + 8)..<(m + 8 + headerLength)], as: UTF8.self)
        XCTAssertTrue(header.contains("16"))
        let claimed = Array(header.replacingOccurrences(of: "16", with: "2000000000").utf8)
        var forged = Array(raw[0..<(m + 4)])
        let length = UInt32(claimed.count)
        forged += [UInt8(length & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length >> 16 & 0xFF), UInt8(length >> 24)]
        forged += claimed + raw[(m + 8 + headerLength)..<(raw.count - 4)]
        let crc = WeightFile.crc32Of(forged)
        forged += [UInt8(crc & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 24)]
        try expect(Data(forged), { if case .truncated = $0 { return true }; return false }, "header claims a larger model")
    }
}

final class DatasetTests: XCTestCase {
    var dir: String!
    override func setUp() {
        dir = NSTemporaryDirectory() + "dgidx-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func idx(rank: Int, dims: [Int], payload: [UInt8]) -> Data {
        var d = Data([0, 0, 8, UInt8(rank)])
        for v in dims { d.append(contentsOf: [UInt8(v >> 24), UInt8((v >> 16) & 255), UInt8((v >> 8) & 255), UInt8(v & 255)]) }
        d.append(contentsOf: payload)
        return d
    }

    func writeSet(images: Data, labels: Data) throws {
        try images.write(to: URL(fileURLWithPath: dir + "/t10k-images-idx3-ubyte"))
        try labels.write(to: URL(fileURLWithPath: dir + "/t10k-labels-idx1-ubyte"))
    }

    func testReadsPlainIDX() throws {
        try writeSet(images: idx(rank: 3, dims: [2, 2, 3], payload: Array(0..<12)), labels: idx(rank: 1, dims: [2], payload: [3, 7]))
        let d = try Dataset.load(.test, directory: dir)
        XCTAssertEqual(d.count, 2); XCTAssertEqual(d.features, 6); XCTAssertEqual(d.labels, [3, 7])
        var x = [Float](repeating: 0, count: 12), y = [Int32](repeating: 0, count: 2)
        d.gather([1, 0], x: &x, y: &y)
        XCTAssertEqual(y, [7, 3]); XCTAssertEqual(x[0], 6 / 255, accuracy: 1e-7)
    }

    func testErrorsNameTheProblem() throws {
        XCTAssertThrowsError(try Dataset.load(.test, directory: dir)) { e in
            guard case .missing = e as? DatasetError else { return XCTFail("\(e)") }
            XCTAssertTrue("\(e)".contains("--data-dir"))
        }
        try writeSet(images: idx(rank: 3, dims: [2, 2, 3], payload: Array(0..<10)), labels: idx(rank: 1, dims: [2], payload: [3, 7]))
        XCTAssertThrowsError(try Dataset.load(.test, directory: dir)) { guard case .truncated = $0 as? DatasetError else { return XCTFail("\($0)") } }
        try writeSet(images: idx(rank: 1, dims: [2], payload: [1, 2]), labels: idx(rank: 1, dims: [2], payload: [3, 7]))
        XCTAssertThrowsError(try Dataset.load(.test, directory: dir)) { guard case .corrupt = $0 as? DatasetError else { return XCTFail("\($0)") } }
        try writeSet(images: idx(rank: 3, dims: [3, 1, 1], payload: [1, 2, 3]), labels: idx(rank: 1, dims: [2], payload: [3, 7]))
        XCTAssertThrowsError(try Dataset.load(.test, directory: dir)) { guard case .mismatch = $0 as? DatasetError else { return XCTFail("\($0)") } }
    }

    func testGzipCorruptionIsReported() throws {
        // A real gzip stream of a tiny IDX file, then a damaged copy.
        let raw = dir + "/t10k-images-idx3-ubyte"
        try idx(rank: 3, dims: [40, 10, 10], payload: (0..<4000).map { UInt8($0 % 251) }).write(to: URL(fileURLWithPath: raw))
        try idx(rank: 1, dims: [40], payload: [UInt8](repeating: 1, count: 40)).write(to: URL(fileURLWithPath: dir + "/t10k-labels-idx1-ubyte"))
        let p = Process(); p.executableURL = URL(fileURLWithPath: "/bin/gzip"); p.arguments = ["-f", raw]
        try p.run(); p.waitUntilExit()
        XCTAssertEqual(try Dataset.load(.test, directory: dir).count, 40, "reads .gz")
        var gz = try Data(contentsOf: URL(fileURLWithPath: raw + ".gz"))
        for i in 30..<60 { gz[i] ^= 0x5A }
        try gz.write(to: URL(fileURLWithPath: raw + ".gz"))
        XCTAssertThrowsError(try Dataset.load(.test, directory: dir)) { e in
            guard let d = e as? DatasetError else { return XCTFail("\(e)") }
            switch d { case .corrupt, .truncated: break; default: XCTFail("\(d)") }
        }
    }

    func testFashionMNISTIfInstalled() throws {
        guard FileManager.default.fileExists(atPath: Dataset.defaultDirectory + "/t10k-labels-idx1-ubyte.gz") else {
            throw XCTSkip("Fashion-MNIST not installed")
        }
        let d = try Dataset.load(.test)
        XCTAssertEqual(d.count, 10_000); XCTAssertEqual(d.features, 784); XCTAssertEqual(d.classes, 10)
    }
}
