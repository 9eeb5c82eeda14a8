import Benchmark
import BenchmarkSupport
import DGKernels
import DGRuntime

/// SGEMM on the reference shapes of issue 3 (layer form C = X·Wᵀ), 1 and 2 threads.
/// Ratios against numpy come from `dgperf gemm --suite --peer numpy` (same run); these benchmarks
/// track our own kernels over time with package-benchmark's thresholds.
let benchmarks: @Sendable () -> Void = {
    useDgperfBenchmarkConfiguration()
    let kernels = (try? KernelSet.select(.auto)) ?? .avx2
    let shapes: [(Int, Int, Int, Int)] = [
        (1024, 1024, 1024, 1), (256, 784, 512, 1), (64, 784, 512, 1), (1, 784, 512, 1),
        (1024, 1024, 1024, 2), (256, 784, 512, 2),
    ]
    for (m, k, n, threads) in shapes {
        let engine = GemmEngine(kernels: kernels, executor: ConcurrentPerformExecutor(workers: threads))
        var rng = SplitMix64(seed: 1)
        let a = (0..<(m * k)).map { _ in rng.nextFloat() - 0.5 }
        let w = (0..<(n * k)).map { _ in rng.nextFloat() - 0.5 }
        let c = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
        let box = UncheckedSendableBox((engine, a, w, c))
        Benchmark("sgemm_\(m)x\(k)x\(n)_t\(threads)_\(kernels.name)") { benchmark in
            let (engine, a, w, c) = box.value
            a.withUnsafeBufferPointer { ap in
                w.withUnsafeBufferPointer { wp in
                    for _ in benchmark.scaledIterations {
                        _ = try? engine.sgemm(transB: true, m: m, n: n, k: k, a: ap.baseAddress!, lda: k,
                                              b: wp.baseAddress!, ldb: k, c: c, ldc: n)
                    }
                }
            }
            blackHole(c[0])
        }
    }
}
