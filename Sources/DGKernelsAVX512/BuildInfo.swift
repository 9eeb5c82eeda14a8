/// True when this target was compiled with -O (checked before any timing is reported).
public var avx512TargetIsOptimized: Bool { !_isDebugAssertConfiguration() }
