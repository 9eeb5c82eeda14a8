import DGRuntime

extension PhaseRecorder {
    /// Ends `phase` of `layer`, adding the work the kernels accounted for it.
    @inline(__always)
    public func end(_ phase: Phase, layer: Int, cost: KernelCost) {
        end(phase, layer: layer, macs: cost.macs, bytesRead: cost.bytesRead, bytesWritten: cost.bytesWritten)
    }
}
