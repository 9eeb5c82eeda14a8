import DGKernels
import DGRuntime

/// How the measured code was built, recorded in every result (and checked before timing anything).
public enum BuildIdentity {
    /// "debug" or "release" — the SwiftPM configuration of the harness; measured targets get -O in both.
    public static var configuration: String {
        #if DEBUG
        return "debug"
        #else
        return "release"
        #endif
    }

    /// The flags that matter for speed (kept in step with Package.swift by hand: SwiftPM offers no way to read them).
    public static let flags = "measured targets -O in every configuration; kernels -march=x86-64-v4 (avx512) / x86-64-v3 (avx2); generic code x86-64"

    /// Compiler version bucket (`swift --version` is not available at run time).
    public static var compiler: String {
        #if compiler(>=6.4)
        return "Swift ≥ 6.4"
        #elseif compiler(>=6.3)
        return "Swift 6.3"
        #elseif compiler(>=6.2)
        return "Swift 6.2"
        #elseif compiler(>=6.1)
        return "Swift 6.1"
        #else
        return "Swift < 6.1"
        #endif
    }

    /// True when every module on the measured path (kernels, runtime, models via kernels, harness) is optimised.
    public static var measuredCodeIsOptimized: Bool {
        KernelBuild.isOptimized && RuntimeBuild.isOptimized && !_isDebugAssertConfiguration()
    }

    /// Refuses to time unoptimised code (see Package.swift `optimizedAlways`).
    public static func requireOptimized() throws {
        guard measuredCodeIsOptimized else {
            throw HarnessError(.software, "the measured code was built without optimisation; timings would be meaningless. Rebuild the kernel, runtime and harness targets with -O (Package.swift does this in every configuration unless its flags were changed)")
        }
    }
}
