import CHwloc

/// What the CPU and OS support, from CPUID/XGETBV (hwloc does not report ISA extensions).
public struct CPUFeatures: Sendable, Codable, Equatable {
    public var vendor: String
    public var brand: String
    public var family: Int
    public var model: Int
    public var avx2: Bool
    public var fma: Bool
    public var avx512f: Bool
    public var avx512vl: Bool
    public var avx512bw: Bool
    public var avx512dq: Bool

    /// x86-64-v3: AVX2 + FMA + OS support for ymm state.
    public var hasAVX2FMA: Bool { avx2 && fma }
    /// x86-64-v4 subset we compile for: AVX-512 F/VL/BW/DQ + OS support for zmm state.
    public var hasAVX512: Bool { avx512f && avx512vl && avx512bw && avx512dq }

    public init(vendor: String, brand: String, family: Int, model: Int, avx2: Bool, fma: Bool,
                avx512f: Bool, avx512vl: Bool, avx512bw: Bool, avx512dq: Bool) {
        self.vendor = vendor; self.brand = brand; self.family = family; self.model = model
        self.avx2 = avx2; self.fma = fma
        self.avx512f = avx512f; self.avx512vl = avx512vl; self.avx512bw = avx512bw; self.avx512dq = avx512dq
    }

    public static let current: CPUFeatures = detect()

    static func detect() -> CPUFeatures {
        var r = [UInt32](repeating: 0, count: 4)
        func cpuid(_ leaf: UInt32, _ sub: UInt32 = 0) -> (UInt32, UInt32, UInt32, UInt32)? {
            let ok = r.withUnsafeMutableBufferPointer { dg_cpuid(leaf, sub, $0.baseAddress!) }
            return ok != 0 ? (r[0], r[1], r[2], r[3]) : nil
        }
        func bit(_ v: UInt32, _ b: Int) -> Bool { (v >> UInt32(b)) & 1 == 1 }
        func regString(_ regs: [UInt32]) -> String {
            var bytes: [UInt8] = []
            for v in regs { for s in 0..<4 { bytes.append(UInt8((v >> UInt32(8 * s)) & 0xff)) } }
            return String(decoding: bytes.filter { $0 != 0 }, as: UTF8.self).trimmingCharactersSpace()
        }
        var f = CPUFeatures(vendor: "unknown", brand: "unknown", family: 0, model: 0, avx2: false, fma: false,
                            avx512f: false, avx512vl: false, avx512bw: false, avx512dq: false)
        guard let l0 = cpuid(0) else { return f }
        f.vendor = regString([l0.1, l0.3, l0.2])
        let xcr0 = dg_xgetbv0()
        let osAVX = xcr0 & 0x6 == 0x6
        let osAVX512 = osAVX && (xcr0 & 0xE0 == 0xE0)
        if let l1 = cpuid(1) {
            let baseFamily = Int((l1.0 >> 8) & 0xf), extFamily = Int((l1.0 >> 20) & 0xff)
            let baseModel = Int((l1.0 >> 4) & 0xf), extModel = Int((l1.0 >> 16) & 0xf)
            f.family = baseFamily == 0xf ? baseFamily + extFamily : baseFamily
            f.model = (baseFamily == 0xf || baseFamily == 6) ? (extModel << 4) + baseModel : baseModel
            f.fma = bit(l1.2, 12) && osAVX
        }
        if l0.0 >= 7, let l7 = cpuid(7) {
            f.avx2 = bit(l7.1, 5) && osAVX
            f.avx512f = bit(l7.1, 16) && osAVX512
            f.avx512dq = bit(l7.1, 17) && osAVX512
            f.avx512bw = bit(l7.1, 30) && osAVX512
            f.avx512vl = bit(l7.1, 31) && osAVX512
        }
        if let e = cpuid(0x8000_0000), e.0 >= 0x8000_0004 {
            var regs: [UInt32] = []
            for leaf in UInt32(0x8000_0002)...UInt32(0x8000_0004) {
                if let v = cpuid(leaf) { regs += [v.0, v.1, v.2, v.3] }
            }
            f.brand = regString(regs)
        }
        return f
    }
}

extension String {
    func trimmingCharactersSpace() -> String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}
