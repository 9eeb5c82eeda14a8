import DGKernels
import DGRuntime
import Glibc

/// What ran where: recorded in every results file; `fingerprint` names the machine's baseline.
public struct EnvironmentInfo: Codable, Sendable, Equatable {
    public var hostname: String
    public var os: String
    public var cpuModel: String
    public var cpuVendor: String
    public var cpuFeatures: [String]
    public var logicalCores: Int
    public var caches: CacheSizes
    public var compiler: String
    public var buildConfiguration: String
    public var buildFlags: String
    public var measuredCodeOptimized: Bool
    public var gitCommit: String?
    public var kernel: String
    public var blocking: String
    public var pinning: String
    /// CPUs this process may run on (hwloc's allowed cpuset ∩ affinity mask, e.g. a Slurm allocation);
    /// workers are only ever bound inside it. Optional: absent in files written before it was recorded.
    public var allowedCPUs: String?
    public var date: String
    public var dgperfVersion: String
    /// Hash of CPU model, cores, caches, kernel and build flags (not hostname): same fingerprint = comparable absolute times.
    public var fingerprint: String

    public init(hostname: String, os: String, cpuModel: String, cpuVendor: String, cpuFeatures: [String], logicalCores: Int,
                caches: CacheSizes, compiler: String, buildConfiguration: String, buildFlags: String,
                measuredCodeOptimized: Bool, gitCommit: String?, kernel: String, blocking: String, pinning: String,
                date: String, dgperfVersion: String) {
        self.hostname = hostname; self.os = os; self.cpuModel = cpuModel; self.cpuVendor = cpuVendor
        self.cpuFeatures = cpuFeatures; self.logicalCores = logicalCores; self.caches = caches; self.compiler = compiler
        self.buildConfiguration = buildConfiguration; self.buildFlags = buildFlags
        self.measuredCodeOptimized = measuredCodeOptimized; self.gitCommit = gitCommit; self.kernel = kernel
        self.blocking = blocking; self.pinning = pinning; self.date = date; self.dgperfVersion = dgperfVersion
        fingerprint = ""
        fingerprint = EnvironmentInfo.fingerprint(self)
    }

    /// `<cpu-slug>-<cores>c-<hash8>`, e.g. "amd-epyc-2c-1f0e3a9b".
    public static func fingerprint(_ e: EnvironmentInfo) -> String {
        let identity = [e.cpuModel, String(e.logicalCores), String(e.caches.l1d ?? 0), String(e.caches.l2 ?? 0),
                        String(e.caches.l3PerCore ?? 0), e.kernel, e.buildFlags].joined(separator: "|")
        var h: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a 64
        for b in identity.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        var slug = ""
        for ch in e.cpuModel.lowercased() {
            if ch.isLetter || ch.isNumber { slug.append(ch) } else if !slug.hasSuffix("-") { slug.append("-") }
        }
        slug = String(slug.trimmingSuffix("-").prefix(32)).trimmingSuffix("-")
        let hex = String(h >> 32, radix: 16)
        return "\(slug.isEmpty ? "cpu" : slug)-\(e.logicalCores)c-\(String(repeating: "0", count: 8 - hex.count) + hex)"
    }

    /// This machine, for `kernels`.
    public static func current(kernels: KernelSet, dgperfVersion: String) -> EnvironmentInfo {
        let cpu = CPUFeatures.current
        var features: [String] = []
        if cpu.avx2 { features.append("avx2") }
        if cpu.fma { features.append("fma") }
        if cpu.hasAVX512 { features.append("avx512f/vl/bw/dq") }
        var env = EnvironmentInfo(
            hostname: hostName(), os: osName(), cpuModel: cpu.brand, cpuVendor: cpu.vendor, cpuFeatures: features,
            logicalCores: max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))), caches: CacheSizes.current,
            compiler: BuildIdentity.compiler, buildConfiguration: BuildIdentity.configuration,
            buildFlags: BuildIdentity.flags, measuredCodeOptimized: BuildIdentity.measuredCodeIsOptimized,
            gitCommit: GitInfo.headCommit(), kernel: kernels.name, blocking: "\(kernels.blocking)",
            pinning: ExecutorFactory.pinningPolicy, date: Clock.isoNow(), dgperfVersion: dgperfVersion)
        env.allowedCPUs = (try? Topology.load()).map { Topology.cpuList($0.allowedCPUs) }
        return env
    }

    public static func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, 255) == 0 else { return "unknown-host" }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func osName() -> String {
        var u = utsname()
        guard uname(&u) == 0 else { return "Linux" }
        func field<T>(_ v: T) -> String {
            withUnsafeBytes(of: v) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        return "\(field(u.sysname)) \(field(u.release)) \(field(u.machine))"
    }
}

extension String {
    func trimmingSuffix(_ s: String) -> String {
        var r = self
        while r.hasSuffix(s) && !r.isEmpty { r.removeLast(s.count) }
        return r
    }
}

/// Wall-clock dates for file names and records (UTC, no Foundation).
public enum Clock {
    /// "2025-01-31T12:34:56Z".
    public static func isoNow() -> String { format(time(nil), iso: true) }
    /// "20250131-123456" for directory names.
    public static func stampNow() -> String { format(time(nil), iso: false) }

    static func format(_ t: time_t, iso: Bool) -> String {
        var t = t
        var tm = tm()
        gmtime_r(&t, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let d = "\(tm.tm_year + 1900)\(iso ? "-" : "")\(two(tm.tm_mon + 1))\(iso ? "-" : "")\(two(tm.tm_mday))"
        let c = "\(two(tm.tm_hour))\(iso ? ":" : "")\(two(tm.tm_min))\(iso ? ":" : "")\(two(tm.tm_sec))"
        return iso ? "\(d)T\(c)Z" : "\(d)-\(c)"
    }
}

/// The checkout's HEAD commit, read from .git (no git binary needed); nil outside a checkout.
enum GitInfo {
    static func headCommit(from directory: String = ".") -> String? {
        var gitDir = directory + "/.git"
        if !AtomicFile.isDirectory(gitDir) {
            // Worktrees and submodules: ".git" is a file "gitdir: <path>".
            guard let text = try? AtomicFile.read(gitDir), text.hasPrefix("gitdir:") else { return nil }
            gitDir = text.dropFirst(7).trimmingCharacters()
        }
        guard let head = try? AtomicFile.read(gitDir + "/HEAD").trimmingCharacters() else { return nil }
        guard head.hasPrefix("ref:") else { return head.isEmpty ? nil : head }
        let ref = head.dropFirst(4).trimmingCharacters()
        var dirs = [gitDir]
        if let common = try? AtomicFile.read(gitDir + "/commondir").trimmingCharacters() {
            dirs.append(common.hasPrefix("/") ? common : gitDir + "/" + common)
        }
        for d in dirs {
            if let c = try? AtomicFile.read(d + "/" + ref).trimmingCharacters(), !c.isEmpty { return c }
            if let packed = try? AtomicFile.read(d + "/packed-refs") {
                for line in packed.split(separator: "\n") where line.hasSuffix(" " + ref) {
                    return String(line.prefix { $0 != " " })
                }
            }
        }
        return nil
    }
}

extension StringProtocol {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\n" || f == "\t" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\n" || l == "\t" || l == "\r" { s.removeLast() }
        return String(s)
    }
}
