import DGHarness
import Glibc

/// Sweep progress on stderr: a live line with ETA and the current cell on a terminal, one plain line
/// per finished cell otherwise (CI logs), nothing with `--quiet`.
public final class ProgressDisplay: SweepObserver {
    public enum Mode: Sendable { case tty, plain, quiet }
    public let mode: Mode
    var started = 0.0
    var firstIndex = 0
    var estimate = 0.5
    var lastLine = ""

    public init(mode: Mode) { self.mode = mode }

    /// tty when stderr is a terminal, plain otherwise; quiet wins.
    public static func automatic(quiet: Bool) -> ProgressDisplay {
        ProgressDisplay(mode: quiet ? .quiet : isatty(2) != 0 ? .tty : .plain)
    }

    public func sweepStarted(totalCells: Int, alreadyDone: Int, estimatedSecondsPerCell: Double) {
        started = now(); firstIndex = alreadyDone; estimate = estimatedSecondsPerCell
        guard mode != .quiet else { return }
        let pending = totalCells - alreadyDone
        emit("sweep: \(totalCells) cells\(alreadyDone > 0 ? " (\(alreadyDone) already done, resuming)" : ""); about \(ProgressDisplay.duration(Double(pending) * estimate)) at most (per-cell budget \(Format.fixed(estimate, 2)) s; skipped cells take none)\n")
    }

    public func cellStarted(_ cell: Cell, index: Int, of total: Int) {
        guard mode == .tty else { return }
        let line = "\(head(index, total))  \(cell.key)"
        emit("\r\u{1B}[2K" + String(line.prefix(160)))
        lastLine = line
    }

    public func cellFinished(_ result: CellResult, index: Int, of total: Int, elapsedSeconds: Double) {
        switch mode {
        case .quiet: return
        case .tty:
            if result.status != .ok || index == total { emit("\r\u{1B}[2K") }
            if result.status == .failed { emit("failed: \(result.key): \(result.reason ?? "")\n") }
            if index == total { emit("\(head(index, total))  done\n") }
        case .plain:
            emit("\(head(index, total))  \(result.key)  \(ProgressDisplay.summary(result))\n")
        }
    }

    func head(_ index: Int, _ total: Int) -> String {
        let width = String(total).count
        let done = index - firstIndex
        let elapsed = now() - started
        let perCell = done > 0 ? elapsed / Double(done) : estimate
        let eta = Double(total - index) * perCell
        return "[\(Format.pad(String(index), width))/\(total)] \(Format.pad(Format.fixed(100 * Double(index) / Double(max(total, 1)), 0), 3))%  ETA \(ProgressDisplay.duration(eta))"
    }

    static func summary(_ r: CellResult) -> String {
        switch r.status {
        case .ok:
            guard let t = r.timing else { return "ok" }
            var s = "median \(EfficiencyTable.ms(t.summary.median)) ms (\(t.summary.count) reps)"
            if let sp = r.derived?.speedup, r.cell.model != .dense { s += "  speedup \(Format.fixed(sp, 2))×" }
            return s
        case .skipped: return "skipped (\(r.reason ?? ""))"
        case .failed: return "FAILED: \(r.reason ?? "")"
        }
    }

    static func duration(_ s: Double) -> String {
        let total = Int(s.rounded())
        return total >= 3600 ? "\(total / 3600)h\(Format.pad(String(total % 3600 / 60), 2).replacingAll(" ", with: "0"))m"
            : "\(total / 60):\(Format.pad(String(total % 60), 2).replacingAll(" ", with: "0"))"
    }

    func emit(_ s: String) {
        var bytes = Array(s.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress! + off, $0.count - off) }
            if n <= 0 { break }
            off += n
        }
    }

    func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}
