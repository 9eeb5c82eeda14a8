/// Human-readable forms of a `Topology` (the `dgperf topo` tree). Pure string building, no I/O.
extension Topology {
    /// lstopo-style tree: one line per object, chains of single children joined with " + ", followed by a
    /// summary, the cache levels and the PU order of each pinning policy.
    public func treeDescription() -> String {
        var lines: [String] = []
        let allowed = Set(allowedCPUs)
        func label(_ n: Node) -> String {
            var s = n.kind.rawValue + " L#\(n.logicalIndex)"
            if let os = n.osIndex, n.kind != .machine { s += " P#\(os)" }
            var extras: [String] = []
            if let b = n.cacheBytes { extras.append(Self.formatBytes(b)) }
            if let m = n.memoryBytes { extras.append(Self.formatBytes(m)) }
            if n.kind == .pu && !allowed.contains(n.osIndex ?? n.logicalIndex) { extras.append("disallowed") }
            if n.kind == .machine {
                s = "Machine"
                extras = [Self.formatBytes(flattenedMemory(n)) + " total"]
            }
            return extras.isEmpty ? s : s + " (" + extras.joined(separator: ", ") + ")"
        }
        func visit(_ n: Node, depth: Int) {
            // Collapse a chain of objects that each have exactly one CPU child and no memory children.
            var chain = [n]
            var last = n
            while last.children.count == 1, last.memoryChildren.isEmpty, last.kind != .machine {
                last = last.children[0]
                chain.append(last)
            }
            lines.append(String(repeating: "  ", count: depth) + chain.map(label).joined(separator: " + "))
            for m in last.memoryChildren { visit(m, depth: depth + 1) }
            for c in last.children { visit(c, depth: depth + 1) }
        }
        visit(root, depth: 0)
        lines.append("")
        let pkgs = packageCount, numa = numaNodeCount
        lines.append("source: \(source) · hwloc \(hwlocVersion)" + (cpuModel.map { " · \($0)" } ?? ""))
        lines.append("\(pkgs) package\(pkgs == 1 ? "" : "s"), \(numa) NUMA node\(numa == 1 ? "" : "s"), "
                     + "\(coreCount) cores, \(puCount) PUs (\(threadsPerCore) per core)")
        lines.append("allowed PUs: \(Self.cpuList(allowedCPUs)) (\(allowedCPUs.count) PUs on \(allowedCoreCount) cores)")
        let caches = cacheLevels.map { c in
            "\(c.name) \(Self.formatBytes(c.bytes)) ×\(c.instances)"
                + (c.coresPerInstance > 1 ? " (shared by \(c.coresPerInstance) cores)" : " (per core)")
        }
        lines.append("caches: " + (caches.isEmpty ? "none reported" : caches.joined(separator: " · ")))
        for p in [PinningPolicy.compact, .scatter] {
            lines.append("\(p.rawValue) order: " + p.cpuOrder(topology: self).map(String.init).joined(separator: ","))
        }
        return lines.joined(separator: "\n")
    }

    private func flattenedMemory(_ n: Node) -> Int {
        n.flattened().filter { $0.kind == .numaNode }.reduce(0) { $0 + ($1.memoryBytes ?? 0) }
    }

    /// "48 KiB", "1 MiB", "4.7 GiB" (binary units, one decimal only where the value is not whole).
    public static func formatBytes(_ bytes: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var unit = 0, scale = 1
        while unit + 1 < units.count && bytes >= scale * 1024 { scale *= 1024; unit += 1 }
        let tenths = (bytes * 10 + scale / 2) / scale
        let text = tenths % 10 == 0 ? "\(tenths / 10)" : "\(tenths / 10).\(tenths % 10)"
        return text + " " + units[unit]
    }

    /// "0-3,8,10-11" for [0,1,2,3,8,10,11]; "none" for an empty list.
    public static func cpuList(_ cpus: [Int]) -> String {
        let ranges = rangeList(cpus)
        return ranges.isEmpty ? "none" : ranges
    }

    /// "0-3,8,10-11" for any integers (duplicates ignored; "" when empty) — CPU lists, Slurm `--array` specs.
    public static func rangeList(_ values: [Int]) -> String {
        let sorted = Array(Set(values)).sorted()
        var parts: [String] = []
        var i = 0
        while i < sorted.count {
            var j = i
            while j + 1 < sorted.count && sorted[j + 1] == sorted[j] + 1 { j += 1 }
            parts.append(j > i ? "\(sorted[i])-\(sorted[j])" : "\(sorted[i])")
            i = j + 1
        }
        return parts.joined(separator: ",")
    }
}
