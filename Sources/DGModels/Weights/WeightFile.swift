import CZlib
import FoundationEssentials
import Glibc

/// Why a weight file was rejected; each message names the file and the fix.
public enum WeightFileError: Error, CustomStringConvertible, Equatable {
    case missing(String)
    case io(String, String)
    case notAWeightFile(String)
    case unsupportedVersion(String, UInt32)
    case truncated(String)
    case checksum(String)
    case badHeader(String, String)

    public var description: String {
        switch self {
        case .missing(let p): return "weight file not found: \(p) — train one with `dgperf train … --out \(p)`"
        case .io(let p, let why): return "cannot access \(p): \(why)"
        case .notAWeightFile(let p): return "\(p) is not a dgperf weight file (bad magic) — pass a .dgw file written by `dgperf train`"
        case .unsupportedVersion(let p, let v):
            return "\(p) has weight-file format version \(v); this dgperf reads version \(WeightFile.formatVersion) — retrain with this dgperf"
        case .truncated(let p): return "\(p) is truncated — re-copy or retrain it"
        case .checksum(let p): return "\(p) is corrupt (CRC32 mismatch) — re-copy or retrain it"
        case .badHeader(let p, let why): return "\(p) has an invalid header: \(why) — retrain it"
        }
    }
}

/// Versioned, checksummed weights: `magic(8) | version u32 LE | header length u32 LE | header JSON |
/// tensor payload (f32 or f16, LE, in header order) | CRC32 u32 LE over everything before it`.
/// The header carries the model spec, training config, metrics and the tensor directory.
/// Written atomically (temp file in the same folder, fsync, rename).
public struct WeightFile {
    public static let magic: [UInt8] = Array("DGPWGT\r\n".utf8)
    public static let formatVersion: UInt32 = 1

    public enum Storage: String, Codable, Sendable { case f32, f16 }

    public struct TensorEntry: Codable, Equatable, Sendable {
        public var name: String
        public var shape: [Int]
    }

    public struct Header: Codable, Sendable {
        public var spec: ModelSpec
        public var training: TrainingConfig
        public var metrics: TrainingMetrics
        public var storage: Storage
        public var tensors: [TensorEntry]
        public var seed: UInt64
    }

    public var header: Header
    public var network: Network

    // MARK: Writing

    public static func write(network: Network, training: TrainingConfig, metrics: TrainingMetrics,
                             storage: Storage = .f32, seed: UInt64, to path: String) throws {
        let header = Header(spec: network.spec, training: training, metrics: metrics, storage: storage,
                            tensors: network.params.map { TensorEntry(name: $0.name, shape: $0.shape) }, seed: seed)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = try encoder.encode(header)
        var bytes: [UInt8] = magic
        appendLE(&bytes, formatVersion)
        appendLE(&bytes, UInt32(json.count))
        bytes.append(contentsOf: json)
        for p in network.params {
            for i in 0..<p.count {
                switch storage {
                case .f32: appendLE(&bytes, p.value[i].bitPattern)
                case .f16:
                    let h = Float16(p.value[i]).bitPattern
                    bytes.append(UInt8(h & 0xFF)); bytes.append(UInt8(h >> 8))
                }
            }
        }
        appendLE(&bytes, crc32Of(bytes))
        try atomicWrite(bytes, to: path)
    }

    static func atomicWrite(_ bytes: [UInt8], to path: String) throws {
        let tmp = path + ".tmp.\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw WeightFileError.io(tmp, String(cString: strerror(errno)) + " (does the folder exist?)") }
        var ok = true
        bytes.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
                if n <= 0 { ok = false; break }
                off += n
            }
        }
        let why = String(cString: strerror(errno))
        if ok { ok = fsync(fd) == 0 }
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw WeightFileError.io(path, why)
        }
    }

    // MARK: Reading

    public static func read(path: String) throws -> WeightFile {
        guard access(path, F_OK) == 0 else { throw WeightFileError.missing(path) }
        let bytes = try readAll(path)
        return try decode(bytes, path: path)
    }

    public static func decode(_ bytes: [UInt8], path: String) throws -> WeightFile {
        guard bytes.count >= magic.count, Array(bytes[0..<magic.count]) == magic else {
            throw WeightFileError.notAWeightFile(path)
        }
        guard bytes.count >= magic.count + 12 else { throw WeightFileError.truncated(path) }
        let version = readLE(bytes, magic.count)
        guard version == formatVersion else { throw WeightFileError.unsupportedVersion(path, version) }
        let headerLength = Int(readLE(bytes, magic.count + 4))
        let headerStart = magic.count + 8
        guard headerStart + headerLength + 4 <= bytes.count else { throw WeightFileError.truncated(path) }
        // Checksum over the whole body first: a damaged file is reported as such, not as a JSON error.
        let stored = readLE(bytes, bytes.count - 4)
        guard crc32Of(Array(bytes[0..<(bytes.count - 4)])) == stored else {
            throw WeightFileError.checksum(path)
        }
        let header: Header
        do {
            header = try JSONDecoder().decode(Header.self, from: Data(bytes[headerStart..<(headerStart + headerLength)]))
        } catch {
            throw WeightFileError.badHeader(path, "\(error)")
        }
        do { try header.spec.validate() } catch { throw WeightFileError.badHeader(path, "model spec: \(error)") }
        // The file must hold exactly the parameters its spec describes; checked before `Network` allocates them, so a
        // header claiming a model larger than the file is refused instead of being allocated.
        let width = header.storage == .f32 ? 4 : 2
        let (payload, overflow) = header.spec.parameterCount.multipliedReportingOverflow(by: width)
        guard !overflow, headerStart + headerLength + payload + 4 == bytes.count else { throw WeightFileError.truncated(path) }
        let network: Network
        do { network = try Network(spec: header.spec, seed: header.seed) } catch {
            throw WeightFileError.badHeader(path, "model spec: \(error)")
        }
        guard header.tensors == network.params.map({ TensorEntry(name: $0.name, shape: $0.shape) }) else {
            throw WeightFileError.badHeader(path, "tensor directory does not match the model spec")
        }
        var off = headerStart + headerLength
        for p in network.params {
            for i in 0..<p.count {
                if width == 4 {
                    p.value[i] = Float(bitPattern: readLE(bytes, off))
                } else {
                    p.value[i] = Float(Float16(bitPattern: UInt16(bytes[off]) | UInt16(bytes[off + 1]) << 8))
                }
                off += width
            }
        }
        return WeightFile(header: header, network: network)
    }

    static func readAll(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw WeightFileError.io(path, String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw WeightFileError.io(path, String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw WeightFileError.io(path, "not a regular file") }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        let got = bytes.withUnsafeMutableBytes { raw -> Int in
            var off = 0
            while off < raw.count {
                let n = Glibc.read(fd, raw.baseAddress! + off, raw.count - off)
                if n <= 0 { break }
                off += n
            }
            return off
        }
        guard got == bytes.count else { throw WeightFileError.truncated(path) }
        return bytes
    }

    static func crc32Of(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBufferPointer { UInt32(crc32_z(0, $0.baseAddress, $0.count)) }
    }
    static func appendLE(_ b: inout [UInt8], _ v: UInt32) {
        for s in stride(from: 0, to: 32, by: 8) { b.append(UInt8((v >> UInt32(s)) & 0xFF)) }
    }
    static func readLE(_ b: [UInt8], _ off: Int) -> UInt32 {
        UInt32(b[off]) | UInt32(b[off + 1]) << 8 | UInt32(b[off + 2]) << 16 | UInt32(b[off + 3]) << 24
    }
}
