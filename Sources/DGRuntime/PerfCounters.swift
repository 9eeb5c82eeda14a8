import CHwloc
import Glibc

/// The perf_event calls `PerfCounters` makes, injectable so the fallback paths can be tested on a
/// machine where the kernel allows everything (and vice versa).
public struct PerfEventAPI: Sendable {
    /// (type, config) → fd, or -errno.
    public var open: @Sendable (UInt32, UInt64) -> Int32
    /// fd → current count, or nil.
    public var read: @Sendable (Int32) -> UInt64?
    public var close: @Sendable (Int32) -> Void

    public init(open: @escaping @Sendable (UInt32, UInt64) -> Int32, read: @escaping @Sendable (Int32) -> UInt64?,
                close: @escaping @Sendable (Int32) -> Void) {
        self.open = open; self.read = read; self.close = close
    }

    /// The real syscall (through the CHwloc shim).
    public static let system = PerfEventAPI(
        open: { dg_perf_event_open($0, $1) },
        read: { fd in
            var v: UInt64 = 0
            return dg_perf_event_read(fd, &v) == 0 ? v : nil
        },
        close: { _ = Glibc.close($0) })

    /// Every open fails with `errno` (tests; also what a kernel without perf events looks like).
    public static func failing(errno code: Int32) -> PerfEventAPI {
        PerfEventAPI(open: { _, _ in -code }, read: { _ in nil }, close: { _ in })
    }
}

/// One counter's change over a measured region.
public struct CounterReading: Codable, Sendable, Equatable {
    public var name: String
    public var value: Double
    public var unit: String
    public init(name: String, value: Double, unit: String) { self.name = name; self.value = value; self.unit = unit }
}

/// What the counters said about a region, and where the numbers come from.
public struct CounterReport: Codable, Sendable, Equatable {
    /// "cycles, instructions, cache-misses" or "unsupported (reason)".
    public var hardware: String
    /// Where the software counts come from: "perf_event software events" or "getrusage(RUSAGE_SELF)".
    public var softwareSource: String
    public var readings: [CounterReading]
}

/// Hardware counters (cycles, instructions, cache misses) via perf_event_open where the kernel allows
/// them; otherwise "unsupported (reason)" and software counters only: task-clock, context switches and
/// CPU migrations as perf software events, or getrusage when even those are refused. Never fails.
///
/// Counters are opened with `inherit`, so open them before creating the worker threads that should count.
public final class PerfCounters {
    struct Event {
        var name: String
        var unit: String
        var fd: Int32
        var start: UInt64 = 0
        var scale: Double = 1
    }

    private let api: PerfEventAPI
    private var hardware: [Event] = []
    private var software: [Event] = []
    /// Nil when the hardware counters are available.
    public let hardwareUnsupportedReason: String?
    public let softwareSource: String
    private var rusageStart: (cpu: Double, voluntary: Int, involuntary: Int) = (0, 0, 0)

    public init(api: PerfEventAPI = .system) {
        self.api = api
        var firstFailure: (String, Int32)?
        for (name, config) in [("cycles", UInt64(0)), ("instructions", 1), ("cache-misses", 3)] {
            let fd = api.open(0, config)
            if fd >= 0 { hardware.append(Event(name: name, unit: "", fd: fd)) } else if firstFailure == nil { firstFailure = (name, -fd) }
        }
        hardwareUnsupportedReason = hardware.isEmpty ? PerfCounters.explain(firstFailure ?? ("cycles", ENOENT)) : nil
        for (name, config, unit, scale) in [("task-clock", UInt64(1), "s", 1e-9), ("context-switches", 3, "", 1),
                                             ("cpu-migrations", 4, "", 1)] {
            let fd = api.open(1, config)
            if fd >= 0 { software.append(Event(name: name, unit: unit, fd: fd, scale: scale)) }
        }
        softwareSource = software.isEmpty ? "getrusage(RUSAGE_SELF)" : "perf_event software events"
    }

    deinit { for e in hardware + software { api.close(e.fd) } }

    /// One line for the user: the hardware counters in use, or why there are none.
    public var hardwareDescription: String {
        hardwareUnsupportedReason.map { "unsupported (\($0))" } ?? hardware.map(\.name).joined(separator: ", ")
    }

    static func explain(_ failure: (String, Int32)) -> String {
        let (event, code) = failure
        let why: String
        switch code {
        case ENOENT, EOPNOTSUPP, ENODEV:
            why = "the kernel exposes no hardware PMU event '\(event)'; common in virtual machines"
        case EACCES, EPERM:
            let level = PerfCounters.paranoidLevel().map { " (kernel.perf_event_paranoid=\($0))" } ?? ""
            why = "not permitted\(level); lower perf_event_paranoid or grant CAP_PERFMON"
        case ENOSYS:
            why = "this kernel has no perf events"
        default:
            why = "perf_event_open('\(event)') failed: \(String(cString: strerror(code)))"
        }
        return why
    }

    static func paranoidLevel() -> Int? {
        guard let f = fopen("/proc/sys/kernel/perf_event_paranoid", "r") else { return nil }
        defer { fclose(f) }
        var v: Int32 = 0
        return withUnsafeMutablePointer(to: &v) { p in fscanfInt(f, p) } ? Int(v) : nil
    }

    private static func fscanfInt(_ f: UnsafeMutablePointer<FILE>, _ p: UnsafeMutablePointer<Int32>) -> Bool {
        var buf = [CChar](repeating: 0, count: 32)
        guard fgets(&buf, 32, f) != nil else { return false }
        let s = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let v = Int32(s.filter { $0 != "\n" && $0 != " " }) else { return false }
        p.pointee = v
        return true
    }

    /// Marks the start of a region.
    public func start() {
        for i in hardware.indices { hardware[i].start = api.read(hardware[i].fd) ?? 0 }
        for i in software.indices { software[i].start = api.read(software[i].fd) ?? 0 }
        rusageStart = PerfCounters.rusage()
    }

    /// Counts since `start()`, plus derived ratios (IPC) where both inputs exist.
    public func stop() -> CounterReport {
        var readings: [CounterReading] = []
        var values: [String: Double] = [:]
        for e in hardware + software {
            guard let v = api.read(e.fd) else { continue }
            let d = Double(v &- e.start) * e.scale
            values[e.name] = d
            readings.append(CounterReading(name: e.name, value: d, unit: e.unit))
        }
        if let c = values["cycles"], let i = values["instructions"], c > 0 {
            readings.append(CounterReading(name: "instructions-per-cycle", value: i / c, unit: ""))
        }
        if software.isEmpty {
            let now = PerfCounters.rusage()
            readings.append(CounterReading(name: "cpu-time", value: now.cpu - rusageStart.cpu, unit: "s"))
            readings.append(CounterReading(name: "context-switches",
                                           value: Double(now.voluntary + now.involuntary - rusageStart.voluntary - rusageStart.involuntary),
                                           unit: ""))
        }
        return CounterReport(hardware: hardwareDescription, softwareSource: softwareSource, readings: readings)
    }

    static func rusage() -> (cpu: Double, voluntary: Int, involuntary: Int) {
        var u = Glibc.rusage()
        guard getrusage(RUSAGE_SELF.rawValue, &u) == 0 else { return (0, 0, 0) }
        let cpu = Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6
        return (cpu, Int(u.ru_nvcsw), Int(u.ru_nivcsw))
    }
}
