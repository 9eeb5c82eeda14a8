import DGModels
import FoundationEssentials
import Glibc

/// A directory of `.dgw` files written by `dgperf train` (e.g. `results/weights/`), for `--weights DIR`:
/// the sweep then times the trained models instead of synthetic masks. Each file describes itself (model
/// spec, training metrics, format version, checksum), so no manifest is needed.
public struct TrainedWeights: Sendable {
    public struct Entry: Sendable {
        public var path: String
        public var spec: ModelSpec
        public var granularity: Int
        public var maskKind: MaskKind
        /// Mean active fraction at the end of training (the cell's r for gated models).
        public var activeFraction: Double
        public var testAccuracy: Double
    }

    public let directory: String
    public let entries: [Entry]

    /// Reads every `.dgw` in `dir`; a missing directory, no weight files, or any unreadable, corrupt or
    /// foreign file is an error naming the file and the fix.
    public static func scan(_ dir: String) throws -> TrainedWeights {
        guard AtomicFile.isDirectory(dir) else {
            throw HarnessError(.noInput, "--weights '\(dir)' is not a directory; pass a directory of .dgw files written by `dgperf train` (e.g. results/weights)")
        }
        let names = AtomicFile.list(dir).filter { $0.hasSuffix(".dgw") }
        guard !names.isEmpty else {
            throw HarnessError.data("--weights '\(dir)' holds no .dgw weight files; write some with `dgperf train … --out \(dir)/NAME.dgw` or use results/weights")
        }
        var entries: [Entry] = []
        for name in names {
            let path = dir + "/" + name
            let file: WeightFile
            do { file = try WeightFile.read(path: path) } catch {
                throw HarnessError.data("--weights: \(error)")
            }
            let spec = file.header.spec
            let gated = spec.kind == .dg || spec.kind == .random
            entries.append(Entry(path: path, spec: spec, granularity: gated ? file.network.granularity : 1,
                                 maskKind: file.network.gatePredictor == .staticLogits ? .shared : .perSample,
                                 activeFraction: gated ? Cell.round3(file.header.metrics.meanActiveFraction) : 1,
                                 testAccuracy: file.header.metrics.testAccuracy))
        }
        return TrainedWeights(directory: dir, entries: entries)
    }

    /// The sweep axes that enumerate exactly these models (batch and threads stay the user's).
    public func apply(to spec: inout SweepSpec) {
        spec.masks = "trained:\(directory)"
        spec.models = Array(Set(entries.map(\.spec.kind))).sorted { $0.rawValue < $1.rawValue }
        spec.hidden = Array(Set(entries.map(\.spec.hidden))).sorted { $0.lexicographicallyPrecedes($1) }
        let gated = entries.filter { $0.spec.kind == .dg || $0.spec.kind == .random }
        spec.activeFractions = gated.isEmpty ? [1] : Array(Set(gated.map(\.activeFraction))).sorted(by: >)
        spec.granularities = gated.isEmpty ? [1] : Array(Set(gated.map(\.granularity))).sorted()
        spec.maskKinds = gated.isEmpty ? [.perSample] : Array(Set(gated.map(\.maskKind))).sorted { $0.rawValue < $1.rawValue }
        if let moe = entries.first(where: { $0.spec.kind == .moe }) {
            spec.experts = moe.spec.experts; spec.topK = moe.spec.topK; spec.capacityFactor = moe.spec.capacityFactor
        }
    }

    /// The weight file for a cell, if this directory has one.
    public func entry(for cell: Cell) -> Entry? {
        entries.first { e in
            guard e.spec.kind == cell.model, e.spec.hidden == cell.hidden else { return false }
            if cell.model == .dg || cell.model == .random {
                return abs(e.activeFraction - cell.activeFraction) < 5e-4 && e.granularity == (cell.granularity ?? 1)
                    && e.maskKind == (cell.maskKind ?? .perSample)
            }
            return true
        }
    }
}

extension Cell {
    /// Three decimals: trained active fractions become readable cell keys (r=0.144).
    public static func round3(_ x: Double) -> Double { (x * 1000).rounded() / 1000 }
}
