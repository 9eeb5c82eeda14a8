import XCTest
@testable import DGRuntime

/// Policy → PU assignment on synthetic topologies (no such hardware needed).
final class PinningPolicyTests: XCTestCase {
    func testCompactFillsCoresInOrderBeforeSMTSiblings() throws {
        let t = try TopologyTests.load("two-socket-numa-smt.xml")
        XCTAssertEqual(PinningPolicy.compact.assignment(workers: 4, topology: t), [0, 2, 4, 6])
        let seventeen = try XCTUnwrap(PinningPolicy.compact.assignment(workers: 17, topology: t))
        XCTAssertEqual(Array(seventeen.prefix(16)), Array(stride(from: 0, to: 32, by: 2)), "one PU per core first")
        XCTAssertEqual(seventeen[16], 1, "then the second hardware thread of core 0")
    }

    func testScatterSpreadsOverPackagesThenNUMAThenCores() throws {
        let t = try TopologyTests.load("two-socket-numa-smt.xml")
        let pus = Dictionary(t.processingUnits.map { ($0.osIndex, $0) }, uniquingKeysWith: { a, _ in a })
        let two = try XCTUnwrap(PinningPolicy.scatter.assignment(workers: 2, topology: t))
        XCTAssertEqual(Set(two.map { pus[$0]!.package }), [0, 1])
        let four = try XCTUnwrap(PinningPolicy.scatter.assignment(workers: 4, topology: t))
        XCTAssertEqual(Set(four.map { pus[$0]!.numaNode }), [0, 1, 2, 3])
        let sixteen = try XCTUnwrap(PinningPolicy.scatter.assignment(workers: 16, topology: t))
        XCTAssertEqual(Set(sixteen.map { pus[$0]!.core }).count, 16, "no SMT sharing while cores are free")
    }

    func testRestrictedCpusetOnlyAllowedPUs() throws {
        let t = try TopologyTests.load("restricted-cgroup-smt.xml")
        XCTAssertEqual(PinningPolicy.compact.assignment(workers: 3, topology: t), [1, 2, 4])
        XCTAssertEqual(PinningPolicy.compact.assignment(workers: 4, topology: t), [1, 2, 4, 5])
        XCTAssertNil(PinningPolicy.compact.assignment(workers: 5, topology: t), "more workers than allowed PUs")
        XCTAssertNil(PinningPolicy.scatter.assignment(workers: 5, topology: t))
    }

    func testEveryAssignmentIsUniqueAndAllowed() throws {
        for name in ["two-socket-numa-smt.xml", "restricted-cgroup-smt.xml", "this-machine-2core.xml"] {
            let t = try TopologyTests.load(name)
            let allowed = Set(t.allowedCPUs)
            for policy in [PinningPolicy.compact, .scatter] {
                XCTAssertEqual(Set(policy.cpuOrder(topology: t)), allowed, "\(name) \(policy)")
                for n in 1...allowed.count {
                    let a = try XCTUnwrap(policy.assignment(workers: n, topology: t), "\(name) \(policy) \(n)")
                    XCTAssertEqual(a.count, n)
                    XCTAssertEqual(Set(a).count, n, "distinct PUs")
                    XCTAssertTrue(Set(a).isSubset(of: allowed))
                }
                XCTAssertNil(policy.assignment(workers: allowed.count + 1, topology: t))
            }
            XCTAssertNil(PinningPolicy.none.assignment(workers: 1, topology: t))
        }
    }
}
