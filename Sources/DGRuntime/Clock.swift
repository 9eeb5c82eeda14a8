import Glibc

/// Monotonic nanoseconds (CLOCK_MONOTONIC_RAW: not slewed by NTP during a measurement).
@inline(__always)
public func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC_RAW, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Seconds taken by `body`.
@inline(__always)
public func timeSeconds(_ body: () throws -> Void) rethrows -> Double {
    let t0 = monotonicNanos()
    try body()
    return Double(monotonicNanos() - t0) * 1e-9
}

import CHwloc

/// A cheap tick counter for per-job accounting: the invariant TSC when the CPU has one (CPUID
/// 0x8000_0007 EDX bit 8), otherwise `monotonicNanos()`. Convert with `secondsPerTick`.
public enum CycleClock {
    /// True when ticks come from an invariant TSC.
    public static let usesTSC: Bool = {
        var r = [UInt32](repeating: 0, count: 4)
        let ok = r.withUnsafeMutableBufferPointer { dg_cpuid(0x8000_0007, 0, $0.baseAddress!) }
        return ok != 0 && (r[3] >> 8) & 1 == 1 && dg_rdtsc() != 0
    }()

    @inline(__always)
    public static func now() -> UInt64 { usesTSC ? dg_rdtsc() : monotonicNanos() }

    /// Measured once against CLOCK_MONOTONIC_RAW over ~5 ms.
    public static let secondsPerTick: Double = {
        guard usesTSC else { return 1e-9 }
        let n0 = monotonicNanos(), c0 = dg_rdtsc()
        while monotonicNanos() &- n0 < 5_000_000 {}
        let n1 = monotonicNanos(), c1 = dg_rdtsc()
        return c1 > c0 ? Double(n1 &- n0) * 1e-9 / Double(c1 &- c0) : 1e-9
    }()
}
