import CHwloc

/// Cache sizes in bytes as the kernels' blocking needs them (nil = unknown).
public struct CacheSizes: Sendable, Equatable, Codable {
    public var l1d: Int?
    public var l2: Int?
    /// L3 size divided by the number of cores sharing it.
    public var l3PerCore: Int?
    public init(l1d: Int? = nil, l2: Int? = nil, l3PerCore: Int? = nil) {
        self.l1d = l1d; self.l2 = l2; self.l3PerCore = l3PerCore
    }

    /// This machine's caches, from hwloc (the first cache object of each level).
    public static let current: CacheSizes = detect()

    static func detect() -> CacheSizes {
        var topo: hwloc_topology_t?
        guard hwloc_topology_init(&topo) == 0, let t = topo else { return CacheSizes() }
        defer { hwloc_topology_destroy(t) }
        guard hwloc_topology_load(t) == 0 else { return CacheSizes() }
        func size(_ type: hwloc_obj_type_t) -> (Int, Int)? {
            guard let obj = hwloc_get_obj_by_type(t, type, 0), let attr = obj.pointee.attr else { return nil }
            let bytes = Int(attr.pointee.cache.size)
            let cores = Int(hwloc_get_nbobjs_inside_cpuset_by_type(t, obj.pointee.cpuset, HWLOC_OBJ_CORE))
            return bytes > 0 ? (bytes, max(cores, 1)) : nil
        }
        var c = CacheSizes()
        c.l1d = size(HWLOC_OBJ_L1CACHE)?.0
        c.l2 = size(HWLOC_OBJ_L2CACHE)?.0
        if let (l3, cores) = size(HWLOC_OBJ_L3CACHE) { c.l3PerCore = l3 / cores }
        return c
    }
}
