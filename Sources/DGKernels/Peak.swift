import DGRuntime

/// Measured FMA peak of one core for a kernel set: run the FMA-only loop, do not assume a clock.
public enum FMAPeak {
    /// GFLOP/s of the best of `trials` runs of ~`seconds` each (best = least disturbed by other load).
    public static func measure(_ kernels: KernelSet, seconds: Double = 0.05, trials: Int = 5) -> Double {
        var iters = 1 << 16
        var sink: Float = 0
        // Calibrate the iteration count to the requested duration.
        while true {
            let t = timeSeconds { sink += kernels.peakLoop(iters, 1.0) }
            if t >= seconds / 4 || iters > 1 << 30 { iters = Int(Double(iters) * seconds / max(t, 1e-6)); break }
            iters *= 4
        }
        var best = 0.0
        for _ in 0..<trials {
            let t = timeSeconds { sink += kernels.peakLoop(iters, 1.0) }
            best = max(best, Double(iters) * kernels.peakFlopsPerIteration / t / 1e9)
        }
        if sink == .infinity { print("") }  // keeps `sink` alive
        return best
    }
}
