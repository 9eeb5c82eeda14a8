/// How this module was compiled. Every measured target carries the same check, so the harness
/// can refuse to time unoptimised code (see `Package.swift`).
public enum RuntimeBuild {
    /// True when this module was compiled with optimisation (-O); asserts are then off.
    public static var isOptimized: Bool { !_isDebugAssertConfiguration() }
}
