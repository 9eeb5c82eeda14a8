import ArgumentParser
import DGRuntime
import FoundationEssentials

/// `dgperf topo`: the machine as the runtime sees it (hwloc), as a tree or as versioned JSON.
struct TopoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topo",
        abstract: "Show the CPU topology (packages, NUMA nodes, caches, cores, PUs) and the allowed CPUs.",
        discussion: """
        Examples:
          dgperf topo
          dgperf topo --json > topo.json
          dgperf topo --xml other-host.xml      # an export made with `lstopo --of xml other-host.xml`
        """
    )

    @Flag(help: "Print JSON (schema \(TopologyReport.schemaID)) instead of a tree.") var json = false
    @Option(help: "Read an hwloc XML export instead of this machine.") var xml: String?

    func run() throws {
        let topology: Topology
        do { topology = xml == nil ? Topology.current : try Topology.load(xmlPath: xml) } catch {
            throw ValidationError("\(error)")
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let data = try encoder.encode(TopologyReport(topology))
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(topology.treeDescription())
        }
    }
}
