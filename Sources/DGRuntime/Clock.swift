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
