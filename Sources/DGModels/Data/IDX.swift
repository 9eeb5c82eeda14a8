import CZlib
import Glibc

/// Problems reading an IDX dataset; each message names the file and what to do.
public enum DatasetError: Error, CustomStringConvertible, Equatable {
    case missing(String)
    case unreadable(String, String)
    case truncated(String, expected: Int, got: Int)
    case corrupt(String, String)
    case mismatch(String)

    public var description: String {
        switch self {
        case .missing(let p):
            return "dataset file not found: \(p) — install Debian's dataset-fashion-mnist or pass --data-dir DIR "
                + "(a folder with train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-…)"
        case .unreadable(let p, let why): return "cannot read \(p): \(why)"
        case .truncated(let p, let expected, let got):
            return "\(p) is truncated: expected \(expected) bytes of data, got \(got) — re-download the file"
        case .corrupt(let p, let why): return "\(p) is not a valid IDX file: \(why) — re-download the file"
        case .mismatch(let why): return "dataset files do not match: \(why)"
        }
    }
}

/// One IDX file (big-endian header: 0, 0, type 0x08 = ubyte, rank; then rank UInt32 dims; then data).
/// Gzip'd or plain: zlib's gzread reads both.
public struct IDXFile: Sendable {
    public var dims: [Int]
    public var bytes: [UInt8]

    /// Reads the whole file; `expectedRank` guards against swapping images and labels.
    public static func read(path: String, expectedRank: Int) throws -> IDXFile {
        guard access(path, F_OK) == 0 else { throw DatasetError.missing(path) }
        guard let gz = gzopen(path, "rb") else { throw DatasetError.unreadable(path, String(cString: strerror(errno))) }
        defer { gzclose(gz) }
        func readExactly(_ n: Int, into p: UnsafeMutableRawPointer) throws -> Int {
            var done = 0
            while done < n {
                let chunk = UInt32(min(n - done, 1 << 30))
                let r = gzread(gz, p + done, chunk)
                if r < 0 {
                    var code: Int32 = 0
                    let msg = gzerror(gz, &code).map { String(cString: $0) } ?? "zlib error \(code)"
                    throw DatasetError.corrupt(path, "gzip stream is damaged (\(msg))")
                }
                if r == 0 { break }
                done += Int(r)
            }
            return done
        }
        var head = [UInt8](repeating: 0, count: 4)
        let gotHead = try head.withUnsafeMutableBytes { try readExactly(4, into: $0.baseAddress!) }
        guard gotHead == 4 else { throw DatasetError.truncated(path, expected: 4, got: gotHead) }
        guard head[0] == 0, head[1] == 0 else { throw DatasetError.corrupt(path, "bad magic number (first two bytes must be 0)") }
        guard head[2] == 0x08 else { throw DatasetError.corrupt(path, "element type 0x\(String(head[2], radix: 16)) is not unsigned byte (0x08)") }
        guard Int(head[3]) == expectedRank else {
            throw DatasetError.corrupt(path, "rank \(head[3]), expected \(expectedRank) (images have rank 3, labels rank 1)")
        }
        let dimCount = 4 * expectedRank
        var dimBytes = [UInt8](repeating: 0, count: dimCount)
        let gotDims = try dimBytes.withUnsafeMutableBytes { try readExactly(dimCount, into: $0.baseAddress!) }
        guard gotDims == dimCount else { throw DatasetError.truncated(path, expected: dimCount, got: gotDims) }
        var dims: [Int] = []
        var total = 1
        for d in 0..<expectedRank {
            let v = (0..<4).reduce(0) { ($0 << 8) | Int(dimBytes[4 * d + $1]) }
            guard v >= 1, v < 1 << 28 else { throw DatasetError.corrupt(path, "dimension \(d) is \(v)") }
            dims.append(v)
            total *= v
            guard total < 1 << 34 else { throw DatasetError.corrupt(path, "implausible size \(dims)") }
        }
        var bytes = [UInt8](repeating: 0, count: total)
        let got = try bytes.withUnsafeMutableBytes { try readExactly(total, into: $0.baseAddress!) }
        guard got == total else { throw DatasetError.truncated(path, expected: total, got: got) }
        return IDXFile(dims: dims, bytes: bytes)
    }
}

/// Images (n × rows·cols bytes) with labels; MNIST and Fashion-MNIST share the layout.
public struct Dataset: Sendable {
    public var images: [UInt8]
    public var labels: [UInt8]
    public var count: Int
    public var features: Int
    public var classes: Int

    public static let defaultDirectory = "/usr/share/datasets/fashion-mnist"

    public enum Split: String, Sendable { case train, test }

    /// Loads `split` from `directory`, preferring `NAME.gz`, else `NAME`.
    public static func load(_ split: Split, directory: String = defaultDirectory) throws -> Dataset {
        let prefix = split == .train ? "train" : "t10k"
        func locate(_ name: String) throws -> String {
            let base = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            if access(base + ".gz", F_OK) == 0 { return base + ".gz" }
            if access(base, F_OK) == 0 { return base }
            throw DatasetError.missing(base + ".gz")
        }
        let imagePath = try locate("\(prefix)-images-idx3-ubyte")
        let labelPath = try locate("\(prefix)-labels-idx1-ubyte")
        let images = try IDXFile.read(path: imagePath, expectedRank: 3)
        let labels = try IDXFile.read(path: labelPath, expectedRank: 1)
        guard images.dims[0] == labels.dims[0] else {
            throw DatasetError.mismatch("\(imagePath) has \(images.dims[0]) images but \(labelPath) has \(labels.dims[0]) labels")
        }
        let maxLabel = Int(labels.bytes.max() ?? 0)
        guard maxLabel < 256 else { throw DatasetError.corrupt(labelPath, "label \(maxLabel)") }
        return Dataset(images: images.bytes, labels: labels.bytes, count: images.dims[0],
                       features: images.dims[1] * images.dims[2], classes: max(10, maxLabel + 1))
    }

    /// Writes the first `count` samples as floats in [0, 1] into `x` (count × features), wrapping round the set when
    /// it is shorter; labels are not needed (inputs for timing, profiling and mask extraction).
    public func gatherFirst(_ count: Int, into x: UnsafeMutablePointer<Float>) {
        var labels = [Int32](repeating: 0, count: count)
        labels.withUnsafeMutableBufferPointer { gather((0..<count).map { $0 % self.count }[...], x: x, y: $0.baseAddress!) }
    }

    /// Writes samples `indices` as floats in [0, 1] into `x` (count × features) and labels into `y`.
    public func gather(_ indices: ArraySlice<Int>, x: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Int32>) {
        images.withUnsafeBufferPointer { img in
            for (r, s) in indices.enumerated() {
                let src = img.baseAddress! + s * features, dst = x + r * features
                for j in 0..<features { dst[j] = Float(src[j]) * (1 / 255) }
                y[r] = Int32(labels[s])
            }
        }
    }
}
