/// Cache sizes in bytes as the kernels' blocking needs them (nil = unknown; the blocking table then uses
/// its safe defaults).
public struct CacheSizes: Sendable, Equatable, Codable {
    public var l1d: Int?
    public var l2: Int?
    /// L3 size divided by the number of cores sharing it.
    public var l3PerCore: Int?
    public init(l1d: Int? = nil, l2: Int? = nil, l3PerCore: Int? = nil) {
        self.l1d = l1d; self.l2 = l2; self.l3PerCore = l3PerCore
    }

    /// This machine's caches, from `Topology.current` (hwloc).
    public static let current = CacheSizes(topology: Topology.current)

    /// One whole instance of this machine's last cache level (L3, or L2 where there is none), shared by its cores;
    /// nil when unknown. Not a stored field: results files record `CacheSizes` as it is.
    public static let lastLevelBytes = Topology.current.cacheLevels.filter { $0.level >= 2 }.max { $0.level < $1.level }?.bytes

    /// The first instance of each level (dgperf assumes one kind of core; hybrid parts report the first).
    public init(topology: Topology) {
        let levels = topology.cacheLevels
        func level(_ n: Int) -> Topology.CacheLevel? { levels.first { $0.level == n } }
        l1d = level(1)?.bytes
        l2 = level(2)?.bytes
        l3PerCore = level(3).map { $0.bytes / max(1, $0.coresPerInstance) }
    }
}
