import DGKernels
import DGRuntime
import FoundationEssentials
import Glibc

/// Measured machine limits, cached per machine fingerprint as JSON under $XDG_CACHE_HOME/dgperf
/// (else ~/.cache/dgperf). The cache is a convenience: an unreadable, damaged or unwritable cache
/// never fails a command, it only means measuring again.
public enum MachineLimitsCache {
    /// The cache directory, or nil when neither XDG_CACHE_HOME nor HOME is set.
    public static func directory(environment: [String: String] = currentEnvironment()) -> String? {
        if let x = environment["XDG_CACHE_HOME"], x.hasPrefix("/") { return x + "/dgperf" }
        if let h = environment["HOME"], !h.isEmpty { return h + "/.cache/dgperf" }
        return nil
    }

    public static func path(fingerprint: String, environment: [String: String] = currentEnvironment()) -> String? {
        directory(environment: environment).map { "\($0)/limits-\(fingerprint).json" }
    }

    /// Cached limits for `fingerprint`, or nil (missing, damaged, other schema or other machine).
    public static func load(fingerprint: String, environment: [String: String] = currentEnvironment()) -> MachineLimits? {
        guard let p = path(fingerprint: fingerprint, environment: environment), AtomicFile.exists(p),
              let text = try? AtomicFile.read(p),
              let limits = try? JSONDecoder().decode(MachineLimits.self, from: Data(text.utf8)),
              limits.schema == MachineLimits.schema, limits.fingerprint == fingerprint else { return nil }
        return limits
    }

    /// Writes the cache; returns the path, or nil (and why) when it could not be written.
    @discardableResult
    public static func store(_ limits: MachineLimits, environment: [String: String] = currentEnvironment()) -> (path: String?, problem: String?) {
        guard let dir = directory(environment: environment), let p = path(fingerprint: limits.fingerprint, environment: environment) else {
            return (nil, "neither XDG_CACHE_HOME nor HOME is set")
        }
        do {
            try AtomicFile.makeWritableDirectory(dir)
            try AtomicFile.write(encode(limits), to: p)
            return (p, nil)
        } catch {
            return (nil, "\(error)")
        }
    }

    public static func encode(_ limits: MachineLimits) -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? enc.encode(limits)) ?? Data("{}".utf8), as: UTF8.self) + "\n"
    }

    /// Cached limits for this machine, or measured now on all cores (and cached). A cached record is used only
    /// while a short per-core FMA probe (~40 ms) agrees with it (`MachineLimits.staleness`); otherwise it is measured
    /// again. `log` gets one line saying which (and why the cache could not be written, if so).
    public static func obtain(kernels: KernelSet, refresh: Bool = false, options: MachineLimitsProbe.Options = .init(),
                              environment: [String: String] = currentEnvironment(),
                              probe: (KernelSet) -> Double = { FMAPeak.measure($0, seconds: 0.004, trials: 8) },
                              log: (String) -> Void = { _ in }) -> MachineLimits {
        let env = EnvironmentInfo.current(kernels: kernels, dgperfVersion: "")
        if !refresh, let cached = load(fingerprint: env.fingerprint, environment: environment) {
            if let stale = cached.staleness(probedPeakPerCore: probe(kernels)) {
                log("machine limits: cached figures look stale (\(stale)); measuring again")
            } else {
                log("machine limits: cached (\(path(fingerprint: env.fingerprint, environment: environment) ?? "")), measured \(cached.measuredAt); --refresh-limits to re-measure")
                return cached
            }
        } else {
            log("machine limits: measuring (FMA peak, STREAM copy/triad, cache levels; a few seconds)…")
        }
        let executor = ExecutorFactory.make(threads: env.logicalCores)
        let limits = MachineLimitsProbe.measure(kernels: kernels, executor: executor, fingerprint: env.fingerprint,
                                                cpuModel: env.cpuModel, caches: env.caches, measuredAt: Clock.isoNow(),
                                                options: options)
        let (written, problem) = store(limits, environment: environment)
        if let written { log("machine limits: cached in \(written)") } else { log("machine limits: not cached (\(problem ?? "unknown")); measuring again next time") }
        return limits
    }

    public static func currentEnvironment() -> [String: String] {
        var out: [String: String] = [:]
        for key in ["XDG_CACHE_HOME", "HOME"] {
            if let v = getenv(key) { out[key] = String(cString: v) }
        }
        return out
    }
}
