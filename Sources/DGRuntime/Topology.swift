/// The machine as hwloc sees it: a tree of packages, NUMA nodes, caches, cores and PUs, plus which PUs
/// this process may use. Plain values (Codable), so a topology loaded from the live machine, from an
/// hwloc XML export or decoded from JSON behaves the same; `Topology+Hwloc.swift` builds it.
public struct Topology: Sendable, Codable, Equatable {
    /// hwloc object types dgperf keeps (I/O and Misc objects are not loaded).
    public enum Kind: String, Sendable, Codable, Equatable {
        case machine = "Machine", package = "Package", die = "Die", group = "Group", numaNode = "NUMANode"
        case l1d = "L1d", l1i = "L1i", l2 = "L2", l3 = "L3", l4 = "L4", l5 = "L5", core = "Core", pu = "PU"
        case other = "Other"

        /// Data/unified cache level (1…5), nil for non-caches and instruction caches.
        public var dataCacheLevel: Int? {
            switch self {
            case .l1d: 1
            case .l2: 2
            case .l3: 3
            case .l4: 4
            case .l5: 5
            default: nil
            }
        }
    }

    /// One hwloc object. `cpus` are OS indices (P#) of every PU below it, allowed or not.
    public struct Node: Sendable, Codable, Equatable {
        public var kind: Kind
        public var logicalIndex: Int
        /// OS index (P#); nil where hwloc has none (caches, groups).
        public var osIndex: Int?
        public var cpus: [Int]
        public var cacheBytes: Int?
        public var cacheLineBytes: Int?
        /// Local memory of a NUMA node.
        public var memoryBytes: Int?
        public var children: [Node]
        /// NUMA nodes attached at this level (hwloc 2 keeps memory beside, not inside, the CPU tree).
        public var memoryChildren: [Node]

        public init(kind: Kind, logicalIndex: Int, osIndex: Int? = nil, cpus: [Int], cacheBytes: Int? = nil,
                    cacheLineBytes: Int? = nil, memoryBytes: Int? = nil, children: [Node] = [],
                    memoryChildren: [Node] = []) {
            self.kind = kind; self.logicalIndex = logicalIndex; self.osIndex = osIndex; self.cpus = cpus
            self.cacheBytes = cacheBytes; self.cacheLineBytes = cacheLineBytes; self.memoryBytes = memoryBytes
            self.children = children; self.memoryChildren = memoryChildren
        }

        /// This node and everything below it (CPU children first, then memory children), depth first.
        public func flattened() -> [Node] {
            var out: [Node] = []
            func visit(_ n: Node) {
                out.append(n)
                for c in n.memoryChildren { visit(c) }
                for c in n.children { visit(c) }
            }
            visit(self)
            return out
        }
    }

    /// A PU (hardware thread) with the logical indices of the objects that contain it (-1 = none).
    public struct ProcessingUnit: Sendable, Codable, Equatable {
        public var osIndex: Int
        public var logicalIndex: Int
        public var core: Int
        /// Position among the PUs of its core (0 = first hardware thread).
        public var smtIndex: Int
        public var package: Int
        public var numaNode: Int
        public var l3: Int
        public var l2: Int
        public var l1d: Int
        /// Inside the allowed cpuset (cgroup/cpuset and the process affinity mask).
        public var allowed: Bool
    }

    /// "live" (this machine) or "xml:<path>".
    public var source: String
    public var hwlocVersion: String
    public var cpuModel: String?
    /// PUs this process may run on: hwloc's allowed cpuset (cgroup/cpuset, e.g. a Slurm allocation)
    /// intersected, for the live machine, with the process affinity mask. Nothing is ever bound outside it.
    public var allowedCPUs: [Int]
    public var root: Node
    /// Every PU in logical order, with its containers; derived from `root` when the topology is built.
    public var processingUnits: [ProcessingUnit]

    public init(source: String, hwlocVersion: String, cpuModel: String?, allowedCPUs: [Int], root: Node) {
        self.source = source; self.hwlocVersion = hwlocVersion; self.cpuModel = cpuModel
        self.allowedCPUs = allowedCPUs.sorted(); self.root = root
        processingUnits = Topology.processingUnits(root: root, allowed: Set(allowedCPUs))
    }

    /// All objects of one kind, in logical order.
    public func nodes(_ kind: Kind) -> [Node] {
        root.flattened().filter { $0.kind == kind }.sorted { $0.logicalIndex < $1.logicalIndex }
    }

    public var packageCount: Int { max(1, nodes(.package).count) }
    public var numaNodeCount: Int { max(1, nodes(.numaNode).count) }
    public var coreCount: Int { Set(processingUnits.map(\.core)).count }
    public var puCount: Int { processingUnits.count }
    /// Hardware threads per core (max over cores; 1 without SMT).
    public var threadsPerCore: Int { (processingUnits.map(\.smtIndex).max() ?? 0) + 1 }
    /// Cores with at least one allowed PU.
    public var allowedCoreCount: Int { Set(processingUnits.filter(\.allowed).map(\.core)).count }

    /// One cache level summarised: instance count, size of the first instance, PUs and cores per instance.
    public struct CacheLevel: Sendable, Codable, Equatable {
        public var name: String
        public var level: Int
        public var instances: Int
        public var bytes: Int
        public var lineBytes: Int?
        public var pusPerInstance: Int
        public var coresPerInstance: Int
    }

    /// Data and unified cache levels present, L1d first.
    public var cacheLevels: [CacheLevel] {
        let all = root.flattened()
        let coreOfPU = Dictionary(processingUnits.map { ($0.osIndex, $0.core) }, uniquingKeysWith: { a, _ in a })
        var out: [CacheLevel] = []
        for kind in [Kind.l1d, .l2, .l3, .l4, .l5] {
            let caches = all.filter { $0.kind == kind }
            guard let first = caches.first, let bytes = first.cacheBytes, bytes > 0 else { continue }
            let cores = Set(first.cpus.compactMap { coreOfPU[$0] }).count
            out.append(CacheLevel(name: kind.rawValue, level: kind.dataCacheLevel ?? 0, instances: caches.count,
                                  bytes: bytes, lineBytes: first.cacheLineBytes, pusPerInstance: first.cpus.count,
                                  coresPerInstance: max(1, cores)))
        }
        return out
    }

    /// Walks the tree once, tracking the enclosing package/caches/core of every PU.
    static func processingUnits(root: Node, allowed: Set<Int>) -> [ProcessingUnit] {
        let numaNodes = root.flattened().filter { $0.kind == .numaNode }
        var numaOfCPU: [Int: Int] = [:]
        for n in numaNodes { for c in n.cpus where numaOfCPU[c] == nil { numaOfCPU[c] = n.logicalIndex } }
        var out: [ProcessingUnit] = []
        var syntheticCore = -1 // PUs not under a Core object each count as their own core
        func visit(_ n: Node, package: Int, l3: Int, l2: Int, l1d: Int, core: Int, smt: inout Int) {
            switch n.kind {
            case .pu:
                let os = n.osIndex ?? n.logicalIndex
                var coreIndex = core
                if coreIndex < 0 { coreIndex = syntheticCore; syntheticCore -= 1 }
                out.append(ProcessingUnit(osIndex: os, logicalIndex: n.logicalIndex, core: coreIndex, smtIndex: smt,
                                          package: package, numaNode: numaOfCPU[os] ?? 0, l3: l3, l2: l2, l1d: l1d,
                                          allowed: allowed.contains(os)))
                smt += 1
            default:
                var p = package, c3 = l3, c2 = l2, c1 = l1d, co = core
                switch n.kind {
                case .package: p = n.logicalIndex
                case .l3: c3 = n.logicalIndex
                case .l2: c2 = n.logicalIndex
                case .l1d: c1 = n.logicalIndex
                case .core: co = n.logicalIndex
                default: break
                }
                var childSMT = n.kind == .core ? 0 : smt
                for child in n.children {
                    visit(child, package: p, l3: c3, l2: c2, l1d: c1, core: co, smt: &childSMT)
                }
            }
        }
        var smt = 0
        visit(root, package: 0, l3: -1, l2: -1, l1d: -1, core: -1, smt: &smt)
        // Cores numbered by hwloc are ≥ 0; PUs without a core got negative ids: renumber them after the real ones.
        let maxCore = out.map(\.core).max() ?? -1
        for i in out.indices where out[i].core < 0 { out[i].core = maxCore - out[i].core; out[i].smtIndex = 0 }
        return out.sorted { $0.logicalIndex < $1.logicalIndex }
    }
}
