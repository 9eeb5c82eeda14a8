import Benchmark
import BenchmarkSupport
import DGKernels
import DGRuntime

/// The gated-layer paths of issue 4 (D = 784, H = 512, one thread, pre-packed weights) next to the dense layer they
/// are compared with. Same-run ratios (speedup, fraction of ideal) come from `dgperf kernel`; these benchmarks track
/// each path's absolute time over commits with package-benchmark's static thresholds.
let benchmarks: @Sendable () -> Void = {
    useDgperfBenchmarkConfiguration()
    let kernels = (try? KernelSet.select(.auto)) ?? .avx2
    let d = 784, h = 512
    let engine = SparseEngine(gemm: GemmEngine(kernels: kernels, executor: SerialExecutor()), costModelCache: nil)
    var rng = SplitMix64(seed: 1)
    let w = (0..<(h * d)).map { _ in rng.nextFloat() - 0.5 }
    let bias = (0..<h).map { _ in rng.nextFloat() - 0.5 }
    let packed = try! w.withUnsafeBufferPointer { try engine.packWeights($0.baseAddress!, units: h, inFeatures: d) }

    /// Every `stride`-th unit (a shared unit mask), or every `stride`-th block of `g` units.
    func shared(granularity g: Int, every stride: Int) -> GateMask {
        let blocks = (h + g - 1) / g
        return try! GateMask.shared(blockFlags: (0..<blocks).map { $0 % stride == 0 }, granularity: g, units: h)
    }
    func perSample(batch: Int, granularity g: Int, fraction: Double) -> GateMask {
        let blocks = (h + g - 1) / g
        let bits = (0..<(batch * blocks)).map { _ in rng.nextDouble() < fraction ? UInt8(1) : 0 }
        return try! GateMask.perSample(bits: bits, batch: batch, granularity: g, units: h)
    }
    let cases: [(String, Int, GateMask)] = [
        ("dense_b32", 32, .all), ("dense_b256", 256, .all),
        ("shared_g1_r0.25_b32", 32, shared(granularity: 1, every: 4)),
        ("shared_g1_r0.25_b256", 256, shared(granularity: 1, every: 4)),
        ("block_g64_r0.25_b256", 256, shared(granularity: 64, every: 4)),
        ("persample_g16_r0.25_b256", 256, perSample(batch: 256, granularity: 16, fraction: 0.25)),
        ("persample_g64_r0.25_b32", 32, perSample(batch: 32, granularity: 64, fraction: 0.25)),
    ]
    for (name, batch, mask) in cases {
        let x = (0..<(batch * d)).map { _ in rng.nextFloat() - 0.5 }
        let out = UnsafeMutablePointer<Float>.allocate(capacity: batch * h)
        let box = UncheckedSendableBox((engine, x, w, bias, packed, out))
        Benchmark("layer_\(name)_d784_h512_t1_\(kernels.name)") { benchmark in
            let (engine, x, w, bias, packed, out) = box.value
            x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in bias.withUnsafeBufferPointer { bp in
                for _ in benchmark.scaledIterations {
                    _ = try? engine.gatedLinear(input: xp.baseAddress!, batch: batch, inFeatures: d, weights: wp.baseAddress!,
                                                bias: bp.baseAddress!, units: h, mask: mask, packed: packed, output: out)
                }
            } } }
            blackHole(out[0])
        }
    }

    // MoE top-2 of 8 experts (expert hidden 128, capacity 1.25), 32 and 256 tokens.
    let moe = MoEEngine(gemm: GemmEngine(kernels: kernels, executor: SerialExecutor()))
    let weights = try! MoEWeights.random(inFeatures: d, hidden: 128, outFeatures: d, experts: 8, seed: 3)
    let experts = moe.pack(weights)
    let config = MoEConfig(experts: 8, topK: 2, capacityFactor: 1.25)
    for tokens in [32, 256] {
        let x = (0..<(tokens * d)).map { _ in rng.nextFloat() - 0.5 }
        let out = UnsafeMutablePointer<Float>.allocate(capacity: tokens * d)
        let box = UncheckedSendableBox((moe, x, weights, experts, out))
        Benchmark("moe_top2of8_he128_b\(tokens)_d784_t1_\(kernels.name)") { benchmark in
            let (moe, x, weights, experts, out) = box.value
            x.withUnsafeBufferPointer { xp in
                for _ in benchmark.scaledIterations {
                    _ = try? moe.forward(input: xp.baseAddress!, tokens: tokens, weights: weights, config: config,
                                         packed: experts, output: out)
                }
            }
            blackHole(out[0])
        }
    }
}
