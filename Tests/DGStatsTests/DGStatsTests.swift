import XCTest
@testable import DGStats

final class SummaryTests: XCTestCase {
    func testKnownSample() {
        let s = Summary([4, 1, 3, 2, 5])!
        XCTAssertEqual(s.min, 1); XCTAssertEqual(s.max, 5); XCTAssertEqual(s.median, 3)
        XCTAssertEqual(s.mean, 3); XCTAssertEqual(s.p25, 2); XCTAssertEqual(s.p95, 4.8, accuracy: 1e-12)
        XCTAssertEqual(s.stddev, 2.5.squareRoot(), accuracy: 1e-12)
    }
    func testSingleValue() {
        let s = Summary([7])!
        XCTAssertEqual(s.median, 7); XCTAssertEqual(s.p95, 7); XCTAssertEqual(s.stddev, 0)
    }
    func testRejectsEmptyAndNonFinite() {
        XCTAssertNil(Summary([]))
        XCTAssertNil(Summary([1, .nan]))
    }
}

final class MedianIntervalTests: XCTestCase {
    func testTenValuesUsesSecondAndNinthOrderStatistic() {
        // P(Bin(10,½) ≤ 1) = 11/1024 → coverage of [x(2), x(9)] = 1 − 22/1024.
        let ci = MedianInterval((1...10).map(Double.init).shuffled())!
        XCTAssertEqual(ci.lower, 2); XCTAssertEqual(ci.upper, 9)
        XCTAssertEqual(ci.coverage, 1 - 22.0 / 1024, accuracy: 1e-12)
    }
    func testSmallSamplesFallBackToRangeWithHonestCoverage() {
        let ci = MedianInterval([3, 1, 2, 5, 4])!
        XCTAssertEqual(ci.lower, 1); XCTAssertEqual(ci.upper, 5)
        XCTAssertEqual(ci.coverage, 1 - 2.0 / 32, accuracy: 1e-12)
        let one = MedianInterval([2.5])!
        XCTAssertEqual(one.lower, 2.5); XCTAssertEqual(one.upper, 2.5); XCTAssertEqual(one.coverage, 0)
    }
    func testLargeSampleIsNarrowAndCoversAtLeastLevel() {
        let values = (0..<1000).map { Double($0) }
        let ci = MedianInterval(values)!
        XCTAssertGreaterThanOrEqual(ci.coverage, 0.95)
        XCTAssertLessThan(ci.coverage, 0.96)
        // Normal approximation: n/2 ± 1.96·√n/2 ≈ 500 ± 31.
        XCTAssertEqual(ci.lower, 469, accuracy: 2); XCTAssertEqual(ci.upper, 530, accuracy: 2)
        XCTAssertEqual(ci.relativeHalfWidth(around: 499.5), (ci.upper - ci.lower) / 2 / 499.5)
    }
    func testTiesGiveDegenerateInterval() {
        let ci = MedianInterval([Double](repeating: 4, count: 20))!
        XCTAssertEqual(ci.lower, 4); XCTAssertEqual(ci.upper, 4)
        XCTAssertEqual(ci.relativeHalfWidth(around: 4), 0)
    }
    func testRejectsEmpty() { XCTAssertNil(MedianInterval([])) }
}

final class OutlierTests: XCTestCase {
    func testTukeyFences() {
        let v: [Double] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 100]
        XCTAssertEqual(Outliers.tukeyCount(v), 1)
        let (lo, hi) = Outliers.fences(v)
        XCTAssertEqual(lo, 3.25 - 6.75); XCTAssertEqual(hi, 7.75 + 6.75)
    }
    func testNoOutliersInTightOrTinySamples() {
        XCTAssertEqual(Outliers.tukeyCount([1, 1, 1, 1, 1]), 0)
        XCTAssertEqual(Outliers.tukeyCount([1, 1000]), 0)
        XCTAssertEqual(Outliers.tukeyCount([-50, 1, 2, 3, 4, 5, 60]), 2)
    }
}

final class MannWhitneyTests: XCTestCase {
    // Expected values from scipy.stats.mannwhitneyu(method="asymptotic", use_continuity=True).
    func testSeparatedSamples() {
        let t = MannWhitneyU([1, 2, 3], [4, 5, 6])!
        XCTAssertEqual(t.u, 0); XCTAssertEqual(t.pValue, 0.0808555983700523, accuracy: 1e-12)
        XCTAssertEqual(t.probabilityAGreater, 0)
    }
    func testTiesUseMidRanksAndCorrectedVariance() {
        let t = MannWhitneyU([1, 2, 2, 3], [2, 3, 3, 4])!
        XCTAssertEqual(t.u, 3); XCTAssertEqual(t.pValue, 0.1720337089218229, accuracy: 1e-12)
    }
    func testClearShiftIsSignificant() {
        let a = [1.0, 1.1, 0.9, 1.05, 0.95, 1.02, 0.98, 1.01], b = [1.3, 1.35, 1.28, 1.4, 1.31, 1.29, 1.33, 1.36]
        let t = MannWhitneyU(a, b)!
        XCTAssertEqual(t.pValue, 0.0009391056991171899, accuracy: 1e-12)
        XCTAssertLessThan(t.z, 0)
        XCTAssertEqual(MannWhitneyU(b, a)!.probabilityAGreater, 1)
    }
    func testIdenticalAndAllTiedSamplesAreNotDifferent() {
        let a = [1.0, 2, 3, 4, 5]
        XCTAssertEqual(MannWhitneyU(a, a)!.pValue, 1, accuracy: 1e-12)
        let tied = MannWhitneyU([2, 2, 2], [2, 2])!
        XCTAssertEqual(tied.pValue, 1); XCTAssertEqual(tied.z, 0)
    }
    func testSingleValues() {
        let t = MannWhitneyU([1], [2])!
        XCTAssertEqual(t.u, 0); XCTAssertGreaterThan(t.pValue, 0.05)
        XCTAssertNil(MannWhitneyU([], [1]))
    }
}
