import DGModels
import FoundationEssentials
import Glibc

/// Writes one cell for the peer worker: `cell.json` (settings and file names) next to `.npy` files holding
/// the model's tensors, the input variants (variants × batch × features) and the gate masks of the call that
/// produced the reference output (per hidden layer, batch × gates, uint8). numpy reads `.npy` natively.
public enum PeerCellFiles {
    struct Header: Encodable {
        var kind: String
        var batch: Int
        var inputFeatures: Int
        var hidden: [Int]
        var classes: Int
        var granularity: Int
        var maskKind: String
        var gatePredictor: String
        var scale: Double
        var experts: Int
        var topK: Int
        var capacityFactor: Double
        var tensors: [String: String]
        var inputs: String
        var masks: [String]
    }

    /// Writes the files into `directory` (which must exist).
    public static func write(export: ModelExport, batch: Int, inputs: UnsafePointer<Float>, variants: Int,
                             masks: [[UInt8]], to directory: String) throws {
        let spec = export.spec
        var tensorFiles: [String: String] = [:]
        for (i, t) in export.tensors.enumerated() {
            let file = "t\(i).npy"
            try NPY.write(float32: t.values, shape: t.shape, to: directory + "/" + file)
            tensorFiles[t.name] = file
        }
        let inputCount = variants * batch * spec.inputFeatures
        try NPY.write(float32: Array(UnsafeBufferPointer(start: inputs, count: inputCount)),
                      shape: [variants, batch, spec.inputFeatures], to: directory + "/inputs.npy")
        var maskFiles: [String] = []
        for (l, bits) in masks.enumerated() {
            let gates = batch > 0 ? bits.count / batch : 0
            let file = "mask\(l).npy"
            try NPY.write(uint8: bits, shape: [batch, gates], to: directory + "/" + file)
            maskFiles.append(file)
        }
        let header = Header(kind: spec.kind.rawValue, batch: batch, inputFeatures: spec.inputFeatures, hidden: spec.hidden,
                            classes: spec.classes, granularity: export.granularity, maskKind: spec.maskKind.rawValue,
                            gatePredictor: export.gatePredictor, scale: Double(export.liveUnitScale), experts: spec.experts,
                            topK: spec.topK, capacityFactor: spec.capacityFactor, tensors: tensorFiles,
                            inputs: "inputs.npy", masks: maskFiles)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try write(Array(try encoder.encode(header)), to: directory + "/cell.json")
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        guard let f = fopen(path, "wb") else {
            throw PeerError("cannot write peer file '\(path)': \(String(cString: strerror(errno)))")
        }
        let n = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        let closed = fclose(f)
        guard n == bytes.count, closed == 0 else { throw PeerError("cannot write peer file '\(path)' (disk full?)") }
    }

    /// Reads `count` little-endian float32 values written by the worker (`check`).
    public static func readFloat32(_ path: String, count: Int) throws -> [Float] {
        guard let data = FileManager.default.contents(atPath: path) else { throw PeerError("peer output '\(path)' was not written") }
        guard data.count == 4 * count else {
            throw PeerError("peer output '\(path)' holds \(data.count) bytes, expected \(4 * count) (batch × classes float32)")
        }
        return data.withUnsafeBytes { raw in (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) } }
    }
}

/// Minimal writer of NumPy `.npy` files (format 1.0, C order, little-endian).
public enum NPY {
    public static func write(float32 values: [Float], shape: [Int], to path: String) throws {
        var payload = [UInt8]()
        payload.reserveCapacity(4 * values.count)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { payload.append(contentsOf: $0) } }
        try PeerCellFiles.write(encode(descr: "<f4", shape: shape, payload: payload), to: path)
    }

    public static func write(uint8 values: [UInt8], shape: [Int], to path: String) throws {
        try PeerCellFiles.write(encode(descr: "|u1", shape: shape, payload: values), to: path)
    }

    /// Magic, version 1.0, little-endian header length, header dict padded with spaces to a 64-byte boundary.
    public static func encode(descr: String, shape: [Int], payload: [UInt8]) -> [UInt8] {
        let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var dict = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(dims), }"
        let prefix = 10
        let total = prefix + dict.utf8.count + 1
        dict += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        let len = UInt16(dict.utf8.count)
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(len & 0xff), UInt8(len >> 8)] + Array(dict.utf8) + payload
    }
}
