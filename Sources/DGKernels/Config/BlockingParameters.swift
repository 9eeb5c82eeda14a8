import DGRuntime

/// The one place where cache-blocking parameters live (BLIS's MC/KC/NC), per micro-kernel.
///
/// Derived from the cache sizes hwloc reports (`from(cacheSizes:)`), falling back to safe defaults:
/// - KC: one kc×NR panel of B plus one MR×kc panel of A fill about 3/4 of L1d.
/// - MC: an MC×KC block of A fills about half of L2 (the rest streams B panels and C).
/// - NC: a KC×NC block of B fills about half of the L3 share of one core, capped at 4096.
public struct BlockingParameters: Sendable, Equatable, Codable, CustomStringConvertible {
    public var mr: Int
    public var nr: Int
    public var mc: Int
    public var kc: Int
    public var nc: Int

    public init(mr: Int, nr: Int, mc: Int, kc: Int, nc: Int) {
        precondition(mr > 0 && nr > 0 && mc >= mr && kc > 0 && nc >= nr)
        self.mr = mr; self.nr = nr
        self.mc = mc / mr * mr; self.kc = kc; self.nc = nc / nr * nr
    }

    /// Defaults that are safe on any x86-64 with ≥ 32 KiB L1d and ≥ 512 KiB L2.
    public static func defaults(mr: Int, nr: Int) -> BlockingParameters {
        from(cacheSizes: CacheSizes(), mr: mr, nr: nr)
    }

    public static func from(cacheSizes: CacheSizes, mr: Int, nr: Int) -> BlockingParameters {
        let l1 = clamp(cacheSizes.l1d ?? 32 << 10, 16 << 10, 128 << 10)
        let l2 = clamp(cacheSizes.l2 ?? 512 << 10, 128 << 10, 4 << 20)
        let l3 = clamp(cacheSizes.l3PerCore ?? 2 << 20, 512 << 10, 64 << 20)
        var kc = (l1 * 3 / 4) / (4 * (mr + nr))
        kc = clamp(kc / 16 * 16, 64, 512)
        var mc = (l2 / 2) / (4 * kc)
        mc = clamp(mc / mr * mr, mr, 960)
        var nc = (l3 / 2) / (4 * kc)
        nc = clamp(nc / nr * nr, nr * 4, 4096)
        return BlockingParameters(mr: mr, nr: nr, mc: mc, kc: kc, nc: nc)
    }

    /// KC for a product with inner dimension `k`: the same number of K blocks as KC gives, but of
    /// equal depth (784 → 4 × 196 instead of 3 × 240 + 64), so no block pays the per-call overhead
    /// of a shallow micro-kernel loop. Rounded up to a multiple of 8, never above `kc`.
    public func balancedKC(for k: Int) -> Int {
        let blocks = (k + kc - 1) / kc
        let even = (k + blocks - 1) / blocks
        return Swift.max(1, Swift.min(kc, (even + 7) / 8 * 8))
    }

    public var description: String { "MR=\(mr) NR=\(nr) MC=\(mc) KC=\(kc) NC=\(nc)" }
}

@inline(__always) func clamp(_ v: Int, _ lo: Int, _ hi: Int) -> Int { min(max(v, lo), hi) }
