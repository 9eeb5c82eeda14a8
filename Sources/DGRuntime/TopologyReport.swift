/// The versioned JSON form of a topology (`dgperf topo --json`): a summary for people and scripts, the
/// PU table, and the full tree. `schema` changes whenever a field changes meaning.
public struct TopologyReport: Sendable, Codable, Equatable {
    public static let schemaID = "dgperf.topology/1"

    public struct Summary: Sendable, Codable, Equatable {
        public var packages: Int
        public var numaNodes: Int
        public var cores: Int
        public var pus: Int
        public var threadsPerCore: Int
        public var allowedCPUs: [Int]
        public var allowedCores: Int
        public var caches: [Topology.CacheLevel]
        /// PU order each pinning policy uses (worker i → element i).
        public var compactOrder: [Int]
        public var scatterOrder: [Int]
    }

    public var schema: String
    public var source: String
    public var hwlocVersion: String
    public var cpuModel: String?
    public var summary: Summary
    public var processingUnits: [Topology.ProcessingUnit]
    public var tree: Topology.Node

    public init(_ t: Topology) {
        schema = Self.schemaID
        source = t.source; hwlocVersion = t.hwlocVersion; cpuModel = t.cpuModel
        summary = Summary(packages: t.packageCount, numaNodes: t.numaNodeCount, cores: t.coreCount, pus: t.puCount,
                          threadsPerCore: t.threadsPerCore, allowedCPUs: t.allowedCPUs,
                          allowedCores: t.allowedCoreCount, caches: t.cacheLevels,
                          compactOrder: PinningPolicy.compact.cpuOrder(topology: t),
                          scatterOrder: PinningPolicy.scatter.cpuOrder(topology: t))
        processingUnits = t.processingUnits
        tree = t.root
    }

    /// The topology this report describes (round trip of `init(_:)`).
    public var topology: Topology {
        Topology(source: source, hwlocVersion: hwlocVersion, cpuModel: cpuModel,
                 allowedCPUs: summary.allowedCPUs, root: tree)
    }
}
