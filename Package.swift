// swift-tools-version:6.1
// dgperf — does conditional computation in MLPs pay off on CPUs?
//
// Every target on the measured path is compiled with -O even in debug builds, so that
// `swift run dgperf --sweep` (a debug build by default) never measures unoptimised code.
// The two micro-kernel targets additionally get their own ISA flags (x86-64-v4 = AVX-512,
// x86-64-v3 = AVX2+FMA); the generic code stays baseline x86-64, so the same binary runs on
// any x86-64 CPU and picks its kernel from CPUID at start-up (see README "Building").
import PackageDescription

/// -O in every configuration (see header).
let optimizedAlways: [SwiftSetting] = [
    .unsafeFlags(["-O"], .when(configuration: .debug)),
]

/// ISA-specific micro-kernel targets. `-Xcc -march=…` sets the LLVM target features the Swift
/// code generator uses, so SIMD `addingProduct` becomes a real vfmadd instead of a libm call per lane.
func isaTarget(_ name: String, march: String) -> Target {
    .target(
        name: name,
        dependencies: ["DGKernelsSIMD", "CKernelHints"],
        swiftSettings: optimizedAlways + [.unsafeFlags(["-Xcc", "-march=\(march)"])]
    )
}

let package = Package(
    name: "dgperf",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "dgperf", targets: ["dgperf"]),
        .library(name: "DGKernels", targets: ["DGKernels"]),
        .library(name: "DGRuntime", targets: ["DGRuntime"]),
        .library(name: "DGModels", targets: ["DGModels"]),
        .library(name: "DGHarness", targets: ["DGHarness"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // hwloc (Debian libhwloc-dev) plus a tiny C shim for what Swift cannot import (macros, sched_getcpu, cpuid).
        .target(
            name: "CHwloc",
            cSettings: [.unsafeFlags(["-O2"])],
            linkerSettings: [.linkedLibrary("hwloc")]
        ),
        // zlib (Debian zlib1g-dev): gzip'd IDX datasets and CRC32 of weight files.
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .target(name: "DGRuntime", dependencies: ["CHwloc"], swiftSettings: optimizedAlways),
        // What Swift cannot express: a prefetch hint and a 64-flag test (header-only, inlined), and the AVX-512
        // expand of a compact output row into full width (hints.c, called only on AVX-512 machines).
        .target(name: "CKernelHints", cSettings: [.unsafeFlags(["-O2"])]),
        // Width-generic @inlinable loop bodies that each ISA target specialises with its own flags.
        .target(name: "DGKernelsSIMD", dependencies: ["CKernelHints"], swiftSettings: optimizedAlways),
        isaTarget("DGKernelsAVX512", march: "x86-64-v4"),
        isaTarget("DGKernelsAVX2", march: "x86-64-v3"),
        .target(
            name: "DGKernels",
            dependencies: ["DGRuntime", "DGKernelsAVX512", "DGKernelsAVX2", "CKernelHints"],
            swiftSettings: optimizedAlways
        ),
        .target(name: "DGStats", swiftSettings: optimizedAlways),
        .target(name: "DGModels", dependencies: ["DGKernels", "DGRuntime", "CZlib"], swiftSettings: optimizedAlways),
        .target(
            name: "DGHarness",
            dependencies: ["DGModels", "DGKernels", "DGRuntime", "DGStats"],
            swiftSettings: optimizedAlways
        ),
        .target(name: "DGReport", dependencies: ["DGHarness", "DGStats"]),
        .executableTarget(
            name: "dgperf",
            dependencies: [
                "DGHarness", "DGReport", "DGModels", "DGKernels", "DGRuntime", "DGStats",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "DGRuntimeTests", dependencies: ["DGRuntime"], exclude: ["Fixtures"]),
        .testTarget(name: "DGKernelsTests", dependencies: ["DGKernels", "DGRuntime"]),
        .testTarget(name: "DGStatsTests", dependencies: ["DGStats"]),
        .testTarget(name: "DGModelsTests", dependencies: ["DGModels", "DGKernels", "DGRuntime"]),
        .testTarget(name: "DGHarnessTests", dependencies: ["DGHarness", "DGReport"]),
        .testTarget(name: "DGReportTests", dependencies: ["DGReport", "DGHarness"]),
    ],
    swiftLanguageModes: [.v6]
)
