import CHwloc

/// Why a topology could not be loaded.
public enum TopologyError: Error, CustomStringConvertible, Equatable {
    case hwlocInit
    case xmlUnreadable(path: String)
    case loadFailed(source: String)

    public var description: String {
        switch self {
        case .hwlocInit:
            "hwloc could not initialise a topology (out of memory?)"
        case .xmlUnreadable(let path):
            "cannot read hwloc XML topology '\(path)': the file is missing or not hwloc XML. Export one with `lstopo --of xml FILE` (package `hwloc`)"
        case .loadFailed(let source):
            "hwloc failed to load the topology from \(source)"
        }
    }
}

extension Topology {
    /// This machine, loaded once. If hwloc fails (very unusual), a flat topology of the online CPUs.
    /// Shares the hwloc handle used for binding, so the machine is discovered once per process.
    public static let current: Topology = HwlocTopology.live?.model(source: "live")
        ?? fallback(cpuCount: Int(sysconfOnlineCPUs()))

    /// Loads the live machine (`xmlPath == nil`) or an hwloc XML export.
    /// Disallowed PUs stay in the tree but are absent from `allowedCPUs`.
    public static func load(xmlPath: String? = nil) throws -> Topology {
        let handle = try HwlocTopology(xmlPath: xmlPath)
        return handle.model(source: xmlPath.map { "xml:\($0)" } ?? "live")
    }

    /// One package, one core per CPU, no caches: used only when hwloc cannot load the machine.
    static func fallback(cpuCount: Int) -> Topology {
        let n = max(1, cpuCount)
        let cores = (0..<n).map { i in
            Node(kind: .core, logicalIndex: i, osIndex: i, cpus: [i],
                 children: [Node(kind: .pu, logicalIndex: i, osIndex: i, cpus: [i])])
        }
        let package = Node(kind: .package, logicalIndex: 0, osIndex: 0, cpus: Array(0..<n), children: cores)
        let root = Node(kind: .machine, logicalIndex: 0, osIndex: 0, cpus: Array(0..<n), children: [package])
        return Topology(source: "fallback (hwloc failed)", hwlocVersion: "none", cpuModel: nil,
                        allowedCPUs: Array(0..<n), root: root)
    }
}

import Glibc
private func sysconfOnlineCPUs() -> Int { sysconf(Int32(_SC_NPROCESSORS_ONLN)) }

/// Owns one loaded hwloc topology. hwloc topologies are safe for concurrent read-only use (queries and
/// binding) once loaded, which is all dgperf does with them, hence `@unchecked Sendable`.
final class HwlocTopology: @unchecked Sendable {
    let handle: hwloc_topology_t
    let isLive: Bool

    /// The live machine, for binding threads. nil if hwloc cannot load it.
    static let live: HwlocTopology? = try? HwlocTopology(xmlPath: nil)

    init(xmlPath: String?) throws {
        var t: hwloc_topology_t?
        guard hwloc_topology_init(&t) == 0, let topo = t else { throw TopologyError.hwlocInit }
        _ = hwloc_topology_set_flags(topo, UInt(HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED.rawValue))
        if let path = xmlPath {
            guard hwloc_topology_set_xml(topo, path) == 0 else {
                hwloc_topology_destroy(topo)
                throw TopologyError.xmlUnreadable(path: path)
            }
        }
        guard hwloc_topology_load(topo) == 0 else {
            hwloc_topology_destroy(topo)
            throw xmlPath.map { TopologyError.xmlUnreadable(path: $0) } ?? TopologyError.loadFailed(source: "this machine")
        }
        handle = topo
        isLive = xmlPath == nil
    }

    deinit { hwloc_topology_destroy(handle) }

    /// PUs allowed by hwloc (cgroup/cpuset), intersected for the live machine with the process affinity.
    func allowedCPUs() -> [Int] {
        var allowed = bitmapToArray(hwloc_topology_get_allowed_cpuset(handle))
        if isLive, let affinity = processAffinity() {
            let a = Set(affinity)
            let both = allowed.filter { a.contains($0) }
            if !both.isEmpty { allowed = both }
        }
        return allowed
    }

    /// The CPUs the whole process is bound to right now, or nil if hwloc cannot tell.
    func processAffinity() -> [Int]? {
        guard let set = hwloc_bitmap_alloc() else { return nil }
        defer { hwloc_bitmap_free(set) }
        guard hwloc_get_cpubind(handle, set, Int32(HWLOC_CPUBIND_PROCESS.rawValue)) == 0 else { return nil }
        return bitmapToArray(set)
    }

    /// The calling thread's current binding, or nil.
    func threadBinding() -> [Int]? {
        guard let set = hwloc_bitmap_alloc() else { return nil }
        defer { hwloc_bitmap_free(set) }
        guard hwloc_get_cpubind(handle, set, Int32(HWLOC_CPUBIND_THREAD.rawValue)) == 0 else { return nil }
        return bitmapToArray(set)
    }

    /// Binds the calling thread to exactly `cpus` (OS indices). Returns false if the OS refused.
    func bindThread(to cpus: [Int]) -> Bool {
        guard !cpus.isEmpty, let set = hwloc_bitmap_alloc() else { return false }
        defer { hwloc_bitmap_free(set) }
        for c in cpus { hwloc_bitmap_set(set, UInt32(c)) }
        return hwloc_set_cpubind(handle, set, Int32(HWLOC_CPUBIND_THREAD.rawValue)) == 0
    }

    func model(source: String) -> Topology {
        let root = hwloc_get_root_obj(handle)!
        let cpuModel = infoValue(root, "CPUModel") ?? firstPackage().flatMap { infoValue($0, "CPUModel") }
        let version = infoValue(root, "hwlocVersion") ?? hwlocRuntimeVersion()
        return Topology(source: source, hwlocVersion: version, cpuModel: cpuModel,
                        allowedCPUs: allowedCPUs(), root: node(root)!)
    }

    private func firstPackage() -> hwloc_obj_t? { hwloc_get_obj_by_type(handle, HWLOC_OBJ_PACKAGE, 0) }

    private func hwlocRuntimeVersion() -> String {
        let v = hwloc_get_api_version()
        return "\(v >> 16).\((v >> 8) & 0xff).\(v & 0xff)"
    }

    private func infoValue(_ obj: hwloc_obj_t, _ name: String) -> String? {
        let o = obj.pointee
        guard let infos = o.infos else { return nil }
        for i in 0..<Int(o.infos_count) {
            if let n = infos[i].name, String(cString: n) == name, let v = infos[i].value { return String(cString: v) }
        }
        return nil
    }

    /// Converts one hwloc object and its CPU and memory children; nil for object types dgperf ignores.
    private func node(_ obj: hwloc_obj_t) -> Topology.Node? {
        let o = obj.pointee
        guard let kind = Self.kind(o) else { return nil }
        var n = Topology.Node(kind: kind, logicalIndex: Int(o.logical_index),
                              osIndex: o.os_index == UInt32.max ? nil : Int(o.os_index),
                              cpus: o.cpuset.map(bitmapToArray) ?? [])
        if let attr = o.attr {
            if hwloc_obj_type_is_cache(o.type) != 0 {
                n.cacheBytes = Int(attr.pointee.cache.size)
                n.cacheLineBytes = attr.pointee.cache.linesize > 0 ? Int(attr.pointee.cache.linesize) : nil
            } else if o.type == HWLOC_OBJ_NUMANODE {
                n.memoryBytes = Int(attr.pointee.numanode.local_memory)
            }
        }
        if kind == .core || kind == .pu || kind == .machine || kind == .package || kind == .numaNode {
            // OS index is meaningful for these; caches and groups report hwloc's "unknown" sentinel.
        } else {
            n.osIndex = nil
        }
        var child = o.first_child
        while let c = child {
            if let cn = node(c) { n.children.append(cn) }
            child = c.pointee.next_sibling
        }
        var mem = o.memory_first_child
        while let m = mem {
            if let mn = node(m) { n.memoryChildren.append(mn) }
            mem = m.pointee.next_sibling
        }
        return n
    }

    private static func kind(_ o: hwloc_obj) -> Topology.Kind? {
        switch o.type {
        case HWLOC_OBJ_MACHINE: return .machine
        case HWLOC_OBJ_PACKAGE: return .package
        case HWLOC_OBJ_DIE: return .die
        case HWLOC_OBJ_GROUP: return .group
        case HWLOC_OBJ_NUMANODE: return .numaNode
        case HWLOC_OBJ_CORE: return .core
        case HWLOC_OBJ_PU: return .pu
        case HWLOC_OBJ_L1CACHE: return .l1d
        case HWLOC_OBJ_L2CACHE: return .l2
        case HWLOC_OBJ_L3CACHE: return .l3
        case HWLOC_OBJ_L4CACHE: return .l4
        case HWLOC_OBJ_L5CACHE: return .l5
        case HWLOC_OBJ_L1ICACHE: return .l1i
        default: return nil // I/O, Misc, MemCache (not loaded by default anyway)
        }
    }
}

/// OS indices set in an hwloc bitmap, ascending (hwloc_bitmap_foreach_begin is a macro Swift cannot import).
func bitmapToArray(_ set: hwloc_const_bitmap_t?) -> [Int] {
    guard let set else { return [] }
    var out: [Int] = []
    var i = hwloc_bitmap_first(set)
    while i >= 0 {
        out.append(Int(i))
        i = hwloc_bitmap_next(set, i)
    }
    return out
}
