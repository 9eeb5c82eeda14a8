// swift-tools-version:6.1
// Benchmarks for dgperf with ordo-one/package-benchmark, kept in their own package so the main
// package (and `swift test`) never builds the benchmark framework.
//   cd Benchmarks && swift package benchmark                       # run all
//   swift package benchmark --target GemmBenchmarks                  # one suite
//   swift package benchmark baseline update / check                  # thresholds (see README)
import PackageDescription

/// One benchmark executable: the package-benchmark plugin over dgperf's kernels.
func suite(_ name: String) -> Target {
    .executableTarget(
        name: name,
        dependencies: [
            "BenchmarkSupport",
            .product(name: "Benchmark", package: "benchmark"),
            .product(name: "DGKernels", package: "dgperf"),
            .product(name: "DGRuntime", package: "dgperf"),
        ],
        path: "Benchmarks/\(name)",
        plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
    )
}

let package = Package(
    name: "dgperf-benchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "dgperf", path: ".."),
        // The MallocInterposer-only trait list is what resolves offline here (see README "Building").
        .package(url: "https://github.com/ordo-one/benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // Shared configuration (thresholds, metrics) of every suite.
        .target(
            name: "BenchmarkSupport",
            dependencies: [.product(name: "Benchmark", package: "benchmark")],
            path: "Benchmarks/BenchmarkSupport"
        ),
        suite("GemmBenchmarks"),
        suite("SparseBenchmarks"),
    ],
    swiftLanguageModes: [.v6]
)
