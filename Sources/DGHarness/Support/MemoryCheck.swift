import DGModels
import DGRuntime

/// Stops a sweep or profile whose model cannot fit in memory with a usage error, before anything runs: the
/// allocator would otherwise trap halfway (a 784→65536×4 MLP asked for 17 GB and aborted the sweep).
enum MemoryCheck {
    /// Throws when `bytes` (the estimate for `model` at `batch`) exceed `available` (nil: unknown, not checked).
    static func require(_ model: ModelSpec, batch: Int, bytes: Int, available: Int?, fix: String) throws {
        guard let available, bytes > available else { return }
        let shape = model.dims.map(String.init).joined(separator: "→")
        throw HarnessError.usage("the \(model.kind.rawValue) model \(shape) at batch \(batch) needs about "
            + "\(SystemMemory.format(bytes)) (\(model.parameterCount) parameters, held with their packed copies) but this "
            + "machine has \(SystemMemory.format(available)) available; \(fix)")
    }
}
