/// Which hidden units of a gated layer are active, at a granularity of G contiguous units per gate.
///
/// Units are grouped into `blockCount = ceil(units / G)` blocks; block j covers units
/// `j·G ..< min((j+1)·G, units)`, so when `units` is not a multiple of G the last block is partial.
/// Three shapes:
/// - `.all`: every unit of every sample (the dense layer).
/// - shared: one set of active blocks for the whole batch (`shared(activeBlocks:granularity:units:)`).
/// - per-sample: one bit per (sample, block) (`perSample(bits:batch:granularity:units:)`).
/// Constructors validate and throw `SparseError` naming the problem and the fix; they never trap.
public struct GateMask: Sendable, Equatable {
    public enum Kind: String, Sendable, Codable { case all, shared, perSample }

    public let kind: Kind
    /// Units per gate (G ≥ 1); 1 for `.all`.
    public let granularity: Int
    /// Hidden width H the mask was built for; 0 for `.all` (which fits any width).
    public let units: Int
    /// Shared masks: sorted, distinct active block ids.
    public let activeBlocks: [Int32]
    /// Shared masks: the active unit ids the blocks expand to (sorted; the last block clipped to `units`).
    public let activeUnits: [Int32]
    /// Per-sample masks: `batch × blockCount` entries, 1 = on, 0 = off (other non-zero input values are
    /// normalised to 1), row-major by sample.
    public let bits: [UInt8]
    /// Per-sample masks: rows of the batch the mask is for; 0 otherwise.
    public let batch: Int

    private init(kind: Kind, granularity: Int, units: Int, activeBlocks: [Int32] = [], activeUnits: [Int32] = [],
                 bits: [UInt8] = [], batch: Int = 0) {
        self.kind = kind; self.granularity = granularity; self.units = units
        self.activeBlocks = activeBlocks; self.activeUnits = activeUnits; self.bits = bits; self.batch = batch
    }

    /// Every unit active.
    public static let all = GateMask(kind: .all, granularity: 1, units: 0)

    /// Number of gates: ceil(units / granularity).
    public var blockCount: Int { units == 0 ? 0 : (units + granularity - 1) / granularity }

    /// Units covered by block `j` (the last one may be partial).
    @inline(__always) public func blockRange(_ j: Int) -> Range<Int> {
        (j * granularity)..<min((j + 1) * granularity, units)
    }

    /// One mask for the whole batch. `activeBlocks` are block ids in `0..<ceil(units/granularity)`,
    /// sorted ascending without repeats (with granularity 1 they are unit ids).
    public static func shared(activeBlocks: [Int32], granularity: Int = 1, units: Int) throws -> GateMask {
        try validateShape(granularity: granularity, units: units)
        let blocks = (units + granularity - 1) / granularity
        var previous: Int32 = -1
        var expanded: [Int32] = []
        expanded.reserveCapacity(min(units, activeBlocks.count * granularity))
        for (i, b) in activeBlocks.enumerated() {
            guard b >= 0 && Int(b) < blocks else {
                throw SparseError.blockOutOfRange(index: i, value: Int(b), blocks: blocks, granularity: granularity, units: units)
            }
            guard b > previous else { throw SparseError.blocksNotSorted(index: i) }
            previous = b
            let lo = Int(b) * granularity, hi = min(lo + granularity, units)
            for u in lo..<hi { expanded.append(Int32(u)) }
        }
        return GateMask(kind: .shared, granularity: granularity, units: units, activeBlocks: activeBlocks,
                        activeUnits: expanded)
    }

    /// Shared mask from one flag per block (`flags.count == ceil(units/granularity)`).
    public static func shared(blockFlags flags: [Bool], granularity: Int = 1, units: Int) throws -> GateMask {
        try validateShape(granularity: granularity, units: units)
        let blocks = (units + granularity - 1) / granularity
        guard flags.count == blocks else {
            throw SparseError.maskLength(got: flags.count, expected: blocks,
                                         what: "ceil(units \(units) / granularity \(granularity)) block flags")
        }
        return try shared(activeBlocks: flags.indices.filter { flags[$0] }.map { Int32($0) },
                          granularity: granularity, units: units)
    }

    /// Whether every byte is 0 or 1, sixteen bytes at a time (their OR has no bit above the lowest): the per-byte
    /// `allSatisfy` took 139 µs for a 256 × 2048 mask on one Zen 5 core, on every model forward that builds one.
    static func allZeroOrOne(_ bits: [UInt8]) -> Bool {
        bits.withUnsafeBytes { raw in
            var acc = SIMD16<UInt8>()
            var i = 0
            while i + 16 <= raw.count { acc |= raw.loadUnaligned(fromByteOffset: i, as: SIMD16<UInt8>.self); i += 16 }
            var tail: UInt8 = 0
            while i < raw.count { tail |= raw[i]; i += 1 }
            return acc & SIMD16(repeating: 0xFE) == SIMD16() && tail & 0xFE == 0
        }
    }

    /// One mask per sample: `bits[b · blockCount + j] != 0` turns block j of sample b on.
    /// `bits.count` must be `batch × ceil(units / granularity)`.
    public static func perSample(bits: [UInt8], batch: Int, granularity: Int = 1, units: Int) throws -> GateMask {
        try validateShape(granularity: granularity, units: units)
        guard batch >= 1 else { throw SparseError.badDimension(name: "batch", value: batch) }
        let blocks = (units + granularity - 1) / granularity
        guard bits.count == batch * blocks else {
            throw SparseError.maskLength(got: bits.count, expected: batch * blocks,
                                         what: "batch \(batch) × ceil(units \(units) / granularity \(granularity)) = \(batch) × \(blocks) bits")
        }
        // Normalised to 0/1 once here, so the kernels can add and AND the bytes without branches.
        let normalised = allZeroOrOne(bits) ? bits : bits.map { $0 != 0 ? 1 : 0 }
        return GateMask(kind: .perSample, granularity: granularity, units: units, bits: normalised, batch: batch)
    }

    /// This per-sample mask with block j turned off in every row where `keep[j]` is 0 (`keep`: 0/1 per block).
    func keepingBlocks(_ keep: [UInt8]) -> GateMask {
        let blocks = blockCount
        precondition(kind == .perSample && keep.count == blocks, "a per-sample mask and one flag per block")
        // Sixteen flags at a time (an element loop over a copy took 5 % of a trained model's forward).
        typealias B16 = SIMD16<UInt8>
        let out = [UInt8](unsafeUninitializedCapacity: bits.count) { o, count in
            bits.withUnsafeBufferPointer { src in keep.withUnsafeBufferPointer { k in
                let src = src.baseAddress!, k = k.baseAddress!, o = o.baseAddress!
                for b in 0..<batch {
                    let s = src + b * blocks, d = o + b * blocks
                    var j = 0
                    while j + 16 <= blocks {
                        let v = UnsafeRawPointer(s + j).loadUnaligned(as: B16.self) & UnsafeRawPointer(k + j).loadUnaligned(as: B16.self)
                        UnsafeMutableRawPointer(d + j).storeBytes(of: v, as: B16.self)
                        j += 16
                    }
                    while j < blocks { d[j] = s[j] & k[j]; j += 1 }
                }
            } }
            count = bits.count
        }
        return GateMask(kind: .perSample, granularity: granularity, units: units, bits: out, batch: batch)
    }

    /// Per-sample mask from a packed bitset: bit (b·blockCount + j) of `words` (little-endian within each word).
    public static func perSample(packed words: [UInt64], batch: Int, granularity: Int = 1, units: Int) throws -> GateMask {
        try validateShape(granularity: granularity, units: units)
        guard batch >= 1 else { throw SparseError.badDimension(name: "batch", value: batch) }
        let blocks = (units + granularity - 1) / granularity
        let needed = batch * blocks
        guard words.count == (needed + 63) / 64 else {
            throw SparseError.maskLength(got: words.count, expected: (needed + 63) / 64,
                                         what: "ceil(batch \(batch) × \(blocks) blocks / 64) packed words")
        }
        var bits = [UInt8](repeating: 0, count: needed)
        for i in 0..<needed { bits[i] = UInt8((words[i >> 6] >> UInt64(i & 63)) & 1) }
        return GateMask(kind: .perSample, granularity: granularity, units: units, bits: bits, batch: batch)
    }

    private static func validateShape(granularity: Int, units: Int) throws {
        guard granularity >= 1 else { throw SparseError.badGranularity(granularity) }
        guard units >= 1 else { throw SparseError.badDimension(name: "units", value: units) }
    }

    /// Whether block j of sample b is on (per-sample) / block j is on (shared) / always (all).
    public func isActive(sample b: Int, block j: Int) -> Bool {
        switch kind {
        case .all: return true
        case .shared: return activeBlocks.contains(Int32(j))
        case .perSample: return bits[b * blockCount + j] != 0
        }
    }

    /// Active (sample, unit) pairs for a batch of `batch` rows and `units` hidden units.
    public func activePairs(batch: Int, units h: Int) -> Int {
        switch kind {
        case .all: return batch * h
        case .shared: return batch * activeUnits.count
        case .perSample:
            var n = 0
            let blocks = blockCount
            for b in 0..<self.batch {
                for j in 0..<blocks where bits[b * blocks + j] != 0 { n += blockRange(j).count }
            }
            return n
        }
    }
}

/// Rejected sparse-kernel / MoE calls: each message names the problem and how to fix it.
public enum SparseError: Error, CustomStringConvertible, Equatable {
    case badGranularity(Int)
    case badDimension(name: String, value: Int)
    case maskLength(got: Int, expected: Int, what: String)
    case blockOutOfRange(index: Int, value: Int, blocks: Int, granularity: Int, units: Int)
    case blocksNotSorted(index: Int)
    case maskUnitsMismatch(maskUnits: Int, layerUnits: Int)
    case maskBatchMismatch(maskBatch: Int, batch: Int)
    case compactNeedsSharedMask
    case badCapacityFactor(Double)
    case badTopK(k: Int, experts: Int)
    case weightsShape(what: String, got: Int, expected: Int)

    public var description: String {
        switch self {
        case .badGranularity(let g):
            return "granularity G=\(g) is invalid: it must be ≥ 1 (units per gate, e.g. 1, 16, 64)"
        case .badDimension(let name, let v):
            return "\(name)=\(v) is invalid: it must be ≥ 1"
        case .maskLength(let got, let expected, let what):
            return "mask has \(got) entries but needs \(expected) (\(what)); rebuild the mask for this layer's batch, width and granularity"
        case .blockOutOfRange(let i, let v, let blocks, let g, let units):
            return "active block id \(v) at position \(i) is out of range: with \(units) units and granularity \(g) the ids are 0..<\(blocks) (the last block may be partial)"
        case .blocksNotSorted(let i):
            return "active block ids must be sorted ascending without repeats; position \(i) breaks that — sort and deduplicate the ids"
        case .maskUnitsMismatch(let m, let l):
            return "mask was built for \(m) hidden units but the layer has \(l); build the mask with units: \(l)"
        case .maskBatchMismatch(let m, let b):
            return "per-sample mask has \(m) rows but the batch has \(b); build one mask row per sample"
        case .compactNeedsSharedMask:
            return "the compact output layout needs one mask for the whole batch (.all or shared); use .scattered for per-sample masks"
        case .badCapacityFactor(let c):
            return "capacity factor \(c) is invalid: it must be a finite number > 0 (e.g. 1.0 or 1.25)"
        case .badTopK(let k, let e):
            return "top-k=\(k) is invalid with \(e) experts: it must satisfy 1 ≤ k ≤ experts"
        case .weightsShape(let what, let got, let expected):
            return "\(what) has \(got) elements but needs \(expected); check the layer's dimensions"
        }
    }
}
