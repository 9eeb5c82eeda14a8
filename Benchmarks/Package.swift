// swift-tools-version:6.1
// Benchmarks for dgperf with ordo-one/package-benchmark, kept in their own package so the main
// package (and `swift test`) never builds the benchmark framework.
//   cd Benchmarks && swift package benchmark                       # run all
//   swift package benchmark --target GemmBenchmarks                  # one suite
//   swift package benchmark baseline update / check                  # thresholds (see README)
import PackageDescription

let package = Package(
    name: "dgperf-benchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "dgperf", path: ".."),
        // The MallocInterposer-only trait list is what resolves offline here (see README "Building").
        .package(url: "https://github.com/ordo-one/benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "GemmBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "DGKernels", package: "dgperf"),
                .product(name: "DGRuntime", package: "dgperf"),
            ],
            path: "Benchmarks/GemmBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "SparseBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "DGKernels", package: "dgperf"),
                .product(name: "DGRuntime", package: "dgperf"),
            ],
            path: "Benchmarks/SparseBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
