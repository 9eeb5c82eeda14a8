/// Where the workers of a `WorkerPool` run.
///
/// Both pinned policies give each worker its own core while there are free allowed cores, and only then
/// use the second (third…) hardware thread of each core, because two GEMM threads on SMT siblings share one
/// core's FMA units and gain nothing.
public enum PinningPolicy: String, Sendable, Codable, CaseIterable {
    /// Fill cores in logical order (core 0, 1, 2 …): workers share L2/L3 and NUMA memory as closely as possible.
    case compact
    /// Spread over packages, then NUMA nodes/L3 domains, then cores (round-robin at every level of the tree):
    /// maximises aggregate cache and memory bandwidth.
    case scatter
    /// Do not bind; the OS scheduler places the threads (the baseline that pinning is measured against).
    case none

    /// PUs (OS indices) for `workers` workers, worker `i` → element `i`; nil for `.none` or when there are
    /// more workers than allowed PUs (the pool then runs unpinned). Only allowed PUs are ever returned.
    public func assignment(workers: Int, topology: Topology) -> [Int]? {
        guard self != .none, workers >= 1 else { return nil }
        let order = cpuOrder(topology: topology)
        guard workers <= order.count else { return nil }
        return Array(order.prefix(workers))
    }

    /// Every allowed PU in this policy's order (empty for `.none`).
    public func cpuOrder(topology: Topology) -> [Int] {
        let pus = topology.processingUnits.filter(\.allowed)
        // Allowed PUs per core, in hardware-thread order.
        var byCore: [Int: [Topology.ProcessingUnit]] = [:]
        for p in pus { byCore[p.core, default: []].append(p) }
        for k in byCore.keys { byCore[k]!.sort { ($0.smtIndex, $0.logicalIndex) < ($1.smtIndex, $1.logicalIndex) } }
        let coreOrder: [Int]
        switch self {
        case .none:
            return []
        case .compact:
            coreOrder = byCore.keys.sorted { byCore[$0]![0].logicalIndex < byCore[$1]![0].logicalIndex }
        case .scatter:
            coreOrder = Self.scatteredCores(topology.root, coreOfPU: Dictionary(
                pus.map { ($0.osIndex, $0.core) }, uniquingKeysWith: { a, _ in a }))
        }
        // Round r takes the r-th allowed hardware thread of every core, in core order.
        var out: [Int] = []
        let rounds = byCore.values.map(\.count).max() ?? 0
        for r in 0..<rounds {
            for c in coreOrder where r < byCore[c]!.count { out.append(byCore[c]![r].osIndex) }
        }
        return out
    }

    /// Cores with an allowed PU, interleaved round-robin over the children at every level of the tree, so
    /// consecutive workers land in different packages, then different NUMA/L3 domains, then different cores.
    static func scatteredCores(_ root: Topology.Node, coreOfPU: [Int: Int]) -> [Int] {
        func order(_ n: Topology.Node) -> [Int] {
            if n.kind == .core || n.kind == .pu {
                // A core (or a PU outside any core object) is one leaf, if it has an allowed PU.
                guard let core = n.cpus.lazy.compactMap({ coreOfPU[$0] }).first else { return [] }
                return [core]
            }
            let lists = n.children.map(order).filter { !$0.isEmpty }
            let total = lists.reduce(0) { $0 + $1.count }
            var out: [Int] = []
            var i = 0
            while out.count < total {
                for l in lists where i < l.count { out.append(l[i]) }
                i += 1
            }
            return out
        }
        var seen = Set<Int>()
        return order(root).filter { seen.insert($0).inserted }
    }
}
