import DGModels
import DGRuntime

/// Refuses work that cannot fit in memory before anything runs: the allocator would otherwise trap halfway (a
/// 784→65536×4 MLP asked for 17 GB and aborted the sweep with a partial results file). Every command that
/// allocates from user-given shapes (sweep, profile, train, kernel, gemm) asks here.
public enum MemoryCheck {
    /// The message for work that needs `bytes` when only `available` are free (nil: unknown, not checked), or nil
    /// when it fits. `what` names the work ("the dense model 784→512→10 at batch 256"), `fix` the way out.
    public static func problem(bytes: Int, what: String, fix: String,
                               available: Int? = SystemMemory.availableBytes()) -> String? {
        guard let available, bytes > available else { return nil }
        return "\(what) needs about \(SystemMemory.format(bytes)) but this machine has \(SystemMemory.format(available)) "
            + "available; \(fix)"
    }

    /// Throws a usage error when `model` at `batch` would not fit (estimate: `ModelSpec.estimatedMemoryBytes`).
    static func require(_ model: ModelSpec, batch: Int, bytes: Int, available: Int?, fix: String) throws {
        let shape = model.dims.map(String.init).joined(separator: "→")
        if let message = problem(bytes: bytes, what: "the \(model.kind.rawValue) model \(shape) at batch \(batch) "
                                 + "(\(model.parameterCount) parameters, held with their packed copies)", fix: fix, available: available) {
            throw HarnessError.usage(message)
        }
    }
}
