import FoundationEssentials
import XCTest
@testable import DGRuntime

/// Topology model from hwloc XML exports (synthetic multi-socket/NUMA/SMT machines made with
/// `lstopo --input "pack:2 numa:2 l3:1 l2:4 l1d:1 core:1 pu:2" --of xml`) and from this machine.
final class TopologyTests: XCTestCase {
    static func fixture(_ name: String) -> String {
        var dir = #filePath
        while let last = dir.last, last != "/" { dir.removeLast() }
        return dir + "Fixtures/" + name
    }

    static func load(_ name: String) throws -> Topology { try Topology.load(xmlPath: fixture(name)) }

    func testTwoSocketNUMASMTFixture() throws {
        let t = try Self.load("two-socket-numa-smt.xml")
        XCTAssertEqual(t.packageCount, 2)
        XCTAssertEqual(t.numaNodeCount, 4)
        XCTAssertEqual(t.coreCount, 16)
        XCTAssertEqual(t.puCount, 32)
        XCTAssertEqual(t.threadsPerCore, 2)
        XCTAssertEqual(t.allowedCPUs, Array(0..<32))
        // PU P#17 is the second hardware thread of core 8, in package 1, NUMA node 2, L3 #2.
        let pu = try XCTUnwrap(t.processingUnits.first { $0.osIndex == 17 })
        XCTAssertEqual(pu.core, 8)
        XCTAssertEqual(pu.smtIndex, 1)
        XCTAssertEqual(pu.package, 1)
        XCTAssertEqual(pu.numaNode, 2)
        XCTAssertEqual(pu.l3, 2)
        let levels = t.cacheLevels
        XCTAssertEqual(levels.map(\.name), ["L1d", "L2", "L3"])
        let l3 = try XCTUnwrap(levels.last)
        XCTAssertEqual(l3.bytes, 16 << 20)
        XCTAssertEqual(l3.instances, 4)
        XCTAssertEqual(l3.coresPerInstance, 4)
        XCTAssertEqual(l3.pusPerInstance, 8)
        XCTAssertEqual(CacheSizes(topology: t), CacheSizes(l1d: 32 << 10, l2: 4 << 20, l3PerCore: 4 << 20))
        XCTAssertEqual(t.nodes(.numaNode).map(\.memoryBytes), Array(repeating: 1 << 30, count: 4))
    }

    func testRestrictedAllowedCpusetKeepsDisallowedPUsButNeverOffersThem() throws {
        let t = try Self.load("restricted-cgroup-smt.xml")
        XCTAssertEqual(t.puCount, 8)
        XCTAssertEqual(t.allowedCPUs, [1, 2, 4, 5])
        XCTAssertEqual(t.allowedCoreCount, 3)
        XCTAssertEqual(t.processingUnits.filter(\.allowed).map(\.osIndex), [1, 2, 4, 5])
        XCTAssertNil(CacheSizes(topology: t).l3PerCore, "no L3 in this fixture: unknown, not 0")
        XCTAssertTrue(t.treeDescription().contains("PU L#0 P#0 (disallowed)"))
    }

    func testThisMachineExport() throws {
        let t = try Self.load("this-machine-2core.xml")
        XCTAssertEqual(t.coreCount, 2)
        XCTAssertEqual(t.threadsPerCore, 1)
        XCTAssertEqual(t.cpuModel, "AMD EPYC")
        XCTAssertEqual(CacheSizes(topology: t), CacheSizes(l1d: 48 << 10, l2: 1 << 20, l3PerCore: 16 << 20))
    }

    func testMissingOrInvalidXMLThrowsClearError() throws {
        XCTAssertThrowsError(try Topology.load(xmlPath: "/nonexistent/topo.xml")) { error in
            XCTAssertEqual(error as? TopologyError, .xmlUnreadable(path: "/nonexistent/topo.xml"))
            XCTAssertTrue("\(error)".contains("lstopo --of xml"))
        }
        let bogus = Self.fixture("../TopologyTests.swift") // exists, not XML
        XCTAssertThrowsError(try Topology.load(xmlPath: bogus))
    }

    func testLiveTopologyIsConsistent() {
        let t = Topology.current
        XCTAssertEqual(t.source, "live")
        XCTAssertGreaterThanOrEqual(t.puCount, 1)
        XCTAssertFalse(t.allowedCPUs.isEmpty)
        XCTAssertTrue(Set(t.allowedCPUs).isSubset(of: Set(t.processingUnits.map(\.osIndex))))
        XCTAssertEqual(Set(t.processingUnits.map(\.osIndex)).count, t.puCount, "each PU once")
        XCTAssertTrue(t.treeDescription().contains("PU L#0"))
        XCTAssertEqual(CacheSizes.current, CacheSizes(topology: t))
    }

    func testJSONReportRoundTripsAndIsVersioned() throws {
        let t = try Self.load("two-socket-numa-smt.xml")
        let report = TopologyReport(t)
        XCTAssertEqual(report.schema, "dgperf.topology/1")
        XCTAssertEqual(report.summary.scatterOrder.prefix(4), [0, 16, 8, 24])
        let data = try JSONEncoder().encode(report)
        let decoded = try JSONDecoder().decode(TopologyReport.self, from: data)
        XCTAssertEqual(decoded, report)
        XCTAssertEqual(decoded.topology, t)
    }

    func testFormatting() {
        XCTAssertEqual(Topology.formatBytes(48 << 10), "48 KiB")
        XCTAssertEqual(Topology.formatBytes(5_060_644_864), "4.7 GiB")
        XCTAssertEqual(Topology.formatBytes(512), "512 B")
        XCTAssertEqual(Topology.cpuList([0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11")
        XCTAssertEqual(Topology.cpuList([]), "none")
    }
}

final class SystemMemoryTests: XCTestCase {
    func testMeminfoLines() {
        XCTAssertEqual(SystemMemory.parse(line: "MemAvailable:   23456789 kB\n", key: "MemAvailable:"), 23_456_789)
        XCTAssertEqual(SystemMemory.parse(line: "MemAvailable:\t12 kB", key: "MemAvailable:"), 12)
        XCTAssertNil(SystemMemory.parse(line: "MemFree:   100 kB", key: "MemAvailable:"))
        XCTAssertNil(SystemMemory.parse(line: "MemAvailable: lots", key: "MemAvailable:"))
        XCTAssertEqual(SystemMemory.format(25_000_000_000), "25 GB")
        XCTAssertEqual(SystemMemory.format(1_234_000_000), "1.2 GB")
        // On Linux the file is there; the value is positive.
        if let bytes = SystemMemory.availableBytes() { XCTAssertGreaterThan(bytes, 0) }
    }
}
