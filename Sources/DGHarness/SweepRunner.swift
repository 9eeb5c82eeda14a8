/// Progress callbacks (the display lives in DGReport; the runner never formats text).
public protocol SweepObserver: AnyObject {
    func sweepStarted(totalCells: Int, alreadyDone: Int, estimatedSecondsPerCell: Double)
    func cellStarted(_ cell: Cell, index: Int, of total: Int)
    func cellFinished(_ result: CellResult, index: Int, of total: Int, elapsedSeconds: Double)
}

/// How a sweep ended.
public enum SweepOutcome: Equatable, Sendable {
    case completed
    case interrupted(done: Int, total: Int)
}

/// Runs the selected cells of a sweep, writing the results file after every cell.
///
/// Resume: cells already in `existing` (measured or failed) are not run again; the file is rewritten
/// with the union, so a kill at any moment loses at most the cell in progress and duplicates nothing.
public final class SweepRunner {
    public let spec: SweepSpec
    public let shard: Shard?
    public let cellFilter: [String]?
    public let store: ResultsStore
    public let measurer: CellMeasuring
    public weak var observer: SweepObserver?
    let now: () -> String

    public init(spec: SweepSpec, shard: Shard?, cellFilter: [String]? = nil, store: ResultsStore,
                measurer: CellMeasuring, observer: SweepObserver? = nil, now: @escaping () -> String = Clock.isoNow) {
        self.spec = spec.deduplicated(); self.shard = shard; self.cellFilter = cellFilter; self.store = store
        self.measurer = measurer; self.observer = observer; self.now = now
    }

    /// The cells this run is responsible for.
    public var selectedCells: [Cell] { spec.selectCells(shard: shard, keys: cellFilter.map(Set.init)) }

    /// Checks that `existing` was produced by the same sweep before resuming it.
    public func checkResumable(_ existing: RunResults) throws {
        guard existing.spec == spec else {
            throw HarnessError.usage("cannot resume '\(store.resultsPath)': it was written by a different sweep (spec differs: preset '\(existing.spec.preset)'); resume with the same flags, or choose a new --output")
        }
        guard existing.shard == shard, existing.cellFilter == cellFilter else {
            throw HarnessError.usage("cannot resume '\(store.resultsPath)': it holds shard \(existing.shard?.description ?? "all") but this run asks for \(shard?.description ?? "all"); use the same --shard")
        }
    }

    @discardableResult
    public func run(environment: EnvironmentInfo, existing: RunResults? = nil) throws -> (SweepOutcome, RunResults) {
        var results = existing ?? RunResults(spec: spec, shard: shard, cellFilter: cellFilter, environment: environment, now: now())
        if let existing { try checkResumable(existing) }
        // Skipped cells (e.g. a model kind that was not implemented then) are tried again.
        results.cells.removeAll { $0.status == .skipped }
        let cells = selectedCells
        let done = Set(results.cells.map(\.key))
        let pending = cells.filter { !done.contains($0.key) }
        results.complete = false
        results.updatedAt = now()
        try store.write(results)
        let perCell = spec.repetition.budgetSeconds + spec.repetition.warmupSeconds + 0.05
        observer?.sweepStarted(totalCells: cells.count, alreadyDone: cells.count - pending.count, estimatedSecondsPerCell: perCell)
        var index = cells.count - pending.count
        for cell in pending {
            if Interrupt.requested { return (.interrupted(done: index, total: cells.count), results) }
            observer?.cellStarted(cell, index: index, of: cells.count)
            let t0 = monotonicSeconds()
            let m: CellMeasurement
            do { m = try measurer.measure(cell, spec: spec) } catch is SweepInterrupted {
                return (.interrupted(done: index, total: cells.count), results)
            }
            let record = makeRecord(cell, m)
            results.cells.append(record)
            results.recomputeDerived()
            results.updatedAt = now()
            try store.write(results)
            index += 1
            observer?.cellFinished(results.cells.last!, index: index, of: cells.count, elapsedSeconds: monotonicSeconds() - t0)
        }
        // The peak is a best-of measurement: measure again now and give this run's cells the better value,
        // so one disturbed peak measurement does not skew every fraction-of-peak figure.
        if !pending.isEmpty, let before = measurer.peakGflopsPerCore {
            measurer.refinePeak()
            if let after = measurer.peakGflopsPerCore, after > before {
                let measuredNow = Set(pending.map(\.key))
                for i in results.cells.indices where measuredNow.contains(results.cells[i].key) && results.cells[i].status == .ok {
                    results.cells[i].peakGflopsPerCore = after
                }
                results.recomputeDerived()
            }
        }
        // Keep file order equal to expansion order, whatever order resumes happened in.
        let order = Dictionary(uniqueKeysWithValues: cells.enumerated().map { ($1.key, $0) })
        results.cells.sort { (order[$0.key] ?? Int.max) < (order[$1.key] ?? Int.max) }
        results.complete = true
        results.updatedAt = now()
        try store.write(results)
        return (.completed, results)
    }

    func makeRecord(_ cell: Cell, _ m: CellMeasurement) -> CellResult {
        switch m {
        case .measured(let timing, let cost, let denseCost, let active, let notes, let runtime):
            return CellResult(cell: cell, status: .ok, measuredAt: now(), masks: spec.masks,
                              peakGflopsPerCore: measurer.peakGflopsPerCore, timing: timing, cost: cost,
                              denseCost: denseCost, measuredActiveFraction: active, notes: notes, runtime: runtime)
        case .skipped(let why):
            return CellResult(cell: cell, status: .skipped, reason: why, measuredAt: now(), masks: spec.masks)
        case .failed(let why):
            return CellResult(cell: cell, status: .failed, reason: why, measuredAt: now(), masks: spec.masks)
        }
    }
}

import DGRuntime
func monotonicSeconds() -> Double { Double(monotonicNanos()) * 1e-9 }
