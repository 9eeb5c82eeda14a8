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
    /// Peer frameworks run after dgperf on every cell (`--peers`); nil = dgperf only.
    public var peers: PeerMeasuring?
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
        let peerImpls = peers?.implementations ?? []
        func missingPeers(_ cell: Cell) -> [Implementation] { peerImpls.filter { !done.contains(CellResult.key(cell, $0)) } }
        let pending = cells.filter { !done.contains($0.key) || !missingPeers($0).isEmpty }
        let pendingOwn = pending.filter { !done.contains($0.key) }
        results.complete = false
        results.updatedAt = now()
        try store.write(results)
        // Most cells are paired with their dense reference: about twice the budget each.
        let perCell = (spec.repetition.budgetSeconds + spec.repetition.warmupSeconds + 0.05) * Double(2 + peerImpls.count)
        observer?.sweepStarted(totalCells: cells.count, alreadyDone: cells.count - pendingOwn.count, estimatedSecondsPerCell: perCell)
        var index = cells.count - pendingOwn.count
        for cell in pending {
            if Interrupt.requested { return (.interrupted(done: index, total: cells.count), results) }
            if !done.contains(cell.key) {
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
            // The same cell in the peer frameworks, right after dgperf (same machine state, same inputs).
            if let peers, case let missing = missingPeers(cell), !missing.isEmpty {
                let records: [CellResult]
                do {
                    records = try peers.measure(cell, spec: spec, impls: missing, peakGflopsPerCore: measurer.peakGflopsPerCore, now: now())
                } catch is SweepInterrupted {
                    return (.interrupted(done: index, total: cells.count), results)
                }
                guard !records.isEmpty else { continue }
                results.cells.append(contentsOf: records)
                results.recomputeDerived()
                results.updatedAt = now()
                try store.write(results)
            }
        }
        // The peak is a best-of measurement: measure again now and give this run's cells the better value,
        // so one disturbed peak measurement does not skew every fraction-of-peak figure.
        if !pending.isEmpty, let before = measurer.peakGflopsPerCore {
            measurer.refinePeak()
            if let after = measurer.peakGflopsPerCore, after > before {
                let measuredNow = Set(pending.map(\.key))
                for i in results.cells.indices where measuredNow.contains(results.cells[i].cell.key) && results.cells[i].status == .ok {
                    results.cells[i].peakGflopsPerCore = after
                }
                results.recomputeDerived()
            }
        }
        // Keep file order equal to expansion order, whatever order resumes happened in.
        let order = Dictionary(uniqueKeysWithValues: cells.enumerated().map { ($1.key, $0) })
        results.sortCells(by: order)
        results.complete = true
        results.updatedAt = now()
        try store.write(results)
        peers?.finish()
        return (.completed, results)
    }

    func makeRecord(_ cell: Cell, _ m: CellMeasurement) -> CellResult {
        switch m {
        case .measured(let timing, let cost, let denseCost, let active, let notes, let runtime, let reference):
            return CellResult(cell: cell, status: .ok, measuredAt: now(), masks: spec.masks,
                              peakGflopsPerCore: measurer.peakGflopsPerCore, timing: timing, cost: cost,
                              denseCost: denseCost, measuredActiveFraction: active, notes: notes, runtime: runtime,
                              accuracy: notes["accuracy"].flatMap(Double.init), referenceTiming: reference)
        case .skipped(let why):
            return CellResult(cell: cell, status: .skipped, reason: why, measuredAt: now(), masks: spec.masks)
        case .failed(let why):
            return CellResult(cell: cell, status: .failed, reason: why, measuredAt: now(), masks: spec.masks)
        }
    }
}

import DGRuntime
func monotonicSeconds() -> Double { Double(monotonicNanos()) * 1e-9 }
