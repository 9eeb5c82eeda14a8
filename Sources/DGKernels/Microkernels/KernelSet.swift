import DGKernelsAVX2
import DGKernelsAVX512
import DGRuntime

/// Instruction set a kernel set is compiled for.
public enum ISA: String, Sendable, Codable, CaseIterable {
    case avx512, avx2
}

/// Which ISA to use: detect from CPUID, or force one (fails clearly when the CPU lacks it).
public enum ISAChoice: String, Sendable, CaseIterable {
    case auto, avx512, avx2
}

public enum KernelSelectionError: Error, CustomStringConvertible, Equatable {
    case unsupported(ISA, cpu: String)
    case noneAvailable(cpu: String)
    public var description: String {
        switch self {
        case .unsupported(let isa, let cpu):
            return "--isa \(isa.rawValue): this CPU (\(cpu)) does not support it; use --isa auto"
        case .noneAvailable(let cpu):
            return "no supported kernel: dgperf needs at least AVX2+FMA (x86-64-v3); this CPU is \(cpu)"
        }
    }
}

/// C tile = A panel · B panel (+ beta·C, bias, relu), first `rows` rows; the last argument, when not nil, is a B panel
/// to come, whose row k the kernel prefetches at its step k; see `sgemmMicroKernelAVX512_6x32`.
public typealias MicroKernelFn = @convention(c) (
    Int, UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, Float,
    UnsafePointer<Float>?, Bool, Int, UnsafeRawPointer?
) -> Void
/// The same tile with A read in place through MR row pointers instead of a packed panel;
/// see `sgemmRowSourceMicroKernelAVX512_6x32`.
public typealias RowSourceMicroKernelFn = @convention(c) (
    Int, UnsafePointer<UnsafePointer<Float>>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, Float,
    UnsafePointer<Float>?, Bool, Int, UnsafeRawPointer?
) -> Void
/// A 6 × (NR + NR/2) tile: a whole packed B panel plus the first half of the panel `panelStride` floats further, A
/// through row pointers (kc, rows, b, panelStride, c, ldc, beta, bias, relu, rows); see
/// `sgemmPanelAndHalfMicroKernelAVX512_6x48`.
public typealias PanelAndHalfMicroKernelFn = @convention(c) (
    Int, UnsafePointer<UnsafePointer<Float>>, UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>, Int, Float,
    UnsafePointer<Float>?, Bool, Int
) -> Void
/// y = W·x row-wise dot products; see `sgemvRowsAVX512`.
public typealias GemvFn = @convention(c) (
    Int, Int, UnsafePointer<Float>, Int, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Float,
    UnsafePointer<Float>?, Bool
) -> Void
/// Gathered weight rows (row index list) against one vector; see `sgemvIndexedBody`.
public typealias IndexedGemvFn = @convention(c) (
    Int, Int, UnsafePointer<Float>, Int, UnsafePointer<Int32>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Bool,
    UnsafePointer<Float>?, Bool
) -> Void
/// Gathered weight rows against a few sample vectors (n, k, W, ldw, rows, m, x, ldx, y, ldy, scatter, bias, relu);
/// see `sgemvIndexedMultiBody`.
public typealias IndexedGemvMultiFn = @convention(c) (
    Int, Int, UnsafePointer<Float>, Int, UnsafePointer<Int32>, Int, UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>,
    Int, Bool, UnsafePointer<Float>?, Bool
) -> Void
/// Weight rows dotted with the samples that use them (rows, n, k, W, ldw, samples, x, ldx, y, ldy, bias, relu),
/// y[samples[i]·ldy + r] for row r; see `sgemvRowSamplesBody`.
public typealias RowSamplesGemvFn = @convention(c) (
    Int, Int, Int, UnsafePointer<Float>, Int, UnsafePointer<Int32>, UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>,
    Int, UnsafePointer<Float>?, Bool
) -> Void
/// One C row against one packed B panel; see `sgemvPanelAVX512_32`.
public typealias PanelGemvFn = @convention(c) (
    Int, UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Float, UnsafePointer<Float>?, Bool
) -> Void
public typealias PeakLoopFn = @convention(c) (Int, Float) -> Float

/// One ISA's micro-kernels plus the facts the loop nest needs about them (XNNPACK-style registry entry).
public struct KernelSet: Sendable {
    public let isa: ISA
    /// Name recorded in every result, e.g. "avx512-6x32".
    public let name: String
    public let mr: Int
    public let nr: Int
    public let gemm: MicroKernelFn
    public let rowSourceGemm: RowSourceMicroKernelFn
    /// An MR × NR/2 tile on one half of a packed NR-wide B panel, A through row pointers (nil where NR/2 is
    /// below a vector).
    public let halfPanelGemm: RowSourceMicroKernelFn?
    /// An MR × 1.5·NR tile (a whole panel and half the next), A through row pointers (nil without a half-panel kernel).
    public let panelAndHalfGemm: PanelAndHalfMicroKernelFn?
    public let gemv: GemvFn
    public let panelGemv: PanelGemvFn
    public let indexedGemv: IndexedGemvFn
    public let indexedGemvMulti: IndexedGemvMultiFn
    public let rowSamplesGemv: RowSamplesGemvFn
    public let peakLoop: PeakLoopFn
    /// FLOPs of one `peakLoop` iteration.
    public let peakFlopsPerIteration: Double
    public private(set) var blocking: BlockingParameters

    public static let avx512 = KernelSet(
        isa: .avx512, name: "avx512-\(avx512TileRows)x\(avx512TileCols)", mr: avx512TileRows, nr: avx512TileCols,
        gemm: sgemmMicroKernelAVX512_6x32, rowSourceGemm: sgemmRowSourceMicroKernelAVX512_6x32,
        halfPanelGemm: sgemmHalfPanelMicroKernelAVX512_6x16, panelAndHalfGemm: sgemmPanelAndHalfMicroKernelAVX512_6x48,
        gemv: sgemvRowsAVX512, panelGemv: sgemvPanelAVX512_32, indexedGemv: sgemvIndexedAVX512, indexedGemvMulti: sgemvIndexedMultiAVX512,
        rowSamplesGemv: sgemvRowSamplesAVX512, peakLoop: fmaPeakLoopAVX512,
        peakFlopsPerIteration: 16 * 16 * 2,
        blocking: BlockingParameters.from(cacheSizes: CacheSizes.current, mr: avx512TileRows, nr: avx512TileCols))

    public static let avx2 = KernelSet(
        isa: .avx2, name: "avx2-\(avx2TileRows)x\(avx2TileCols)", mr: avx2TileRows, nr: avx2TileCols,
        gemm: sgemmMicroKernelAVX2_6x16, rowSourceGemm: sgemmRowSourceMicroKernelAVX2_6x16,
        halfPanelGemm: nil, panelAndHalfGemm: nil,
        gemv: sgemvRowsAVX2, panelGemv: sgemvPanelAVX2_16, indexedGemv: sgemvIndexedAVX2, indexedGemvMulti: sgemvIndexedMultiAVX2,
        rowSamplesGemv: sgemvRowSamplesAVX2, peakLoop: fmaPeakLoopAVX2,
        peakFlopsPerIteration: 12 * 8 * 2,
        blocking: BlockingParameters.from(cacheSizes: CacheSizes.current, mr: avx2TileRows, nr: avx2TileCols))

    /// Kernel sets this CPU can run, best first.
    public static func available(_ cpu: CPUFeatures = .current) -> [KernelSet] {
        var sets: [KernelSet] = []
        if cpu.hasAVX512 { sets.append(.avx512) }
        if cpu.hasAVX2FMA { sets.append(.avx2) }
        return sets
    }

    /// The kernel set for `choice` on `cpu`; throws with a fix when the CPU cannot run it.
    public static func select(_ choice: ISAChoice, cpu: CPUFeatures = .current) throws -> KernelSet {
        let avail = available(cpu)
        switch choice {
        case .auto:
            guard let best = avail.first else { throw KernelSelectionError.noneAvailable(cpu: cpu.brand) }
            return best
        case .avx512:
            guard cpu.hasAVX512 else { throw KernelSelectionError.unsupported(.avx512, cpu: cpu.brand) }
            return .avx512
        case .avx2:
            guard cpu.hasAVX2FMA else { throw KernelSelectionError.unsupported(.avx2, cpu: cpu.brand) }
            return .avx2
        }
    }

    /// Same kernels with other blocking parameters (for tuning and tests of the loop nest's edges).
    public func with(blocking: BlockingParameters) -> KernelSet {
        precondition(blocking.mr == mr && blocking.nr == nr, "blocking must keep the tile shape")
        var copy = self
        copy.blocking = blocking
        return copy
    }
}

/// Whether every kernel target was compiled optimised (they always should be; see Package.swift).
public enum KernelBuild {
    public static var isOptimized: Bool {
        !_isDebugAssertConfiguration() && avx512TargetIsOptimized && avx2TargetIsOptimized
    }
}
