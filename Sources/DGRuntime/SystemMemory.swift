import Glibc

/// Memory the kernel says a new allocation can have without swapping (`MemAvailable` in /proc/meminfo), so a
/// sweep or profile whose model cannot fit stops with a message before it starts, rather than being killed or
/// trapping in the allocator halfway through (a 65536-wide, 4-layer MLP asked for 17 GB and aborted).
public enum SystemMemory {
    /// Bytes available, or nil where /proc/meminfo is missing or unreadable (the check is then skipped).
    public static func availableBytes() -> Int? {
        guard let file = fopen("/proc/meminfo", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if let kib = parse(line: text, key: "MemAvailable:") { return kib * 1024 }
        }
        return nil
    }

    /// The kB value of a meminfo line such as "MemAvailable:   23456789 kB", or nil when the key differs.
    static func parse(line: String, key: String) -> Int? {
        guard line.hasPrefix(key) else { return nil }
        let fields = line.dropFirst(key.count).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
        guard let value = fields.first, let kib = Int(value) else { return nil }
        return kib
    }

    /// "12.3 GB" (decimal units, as `free -g` users read them).
    public static func format(_ bytes: Int) -> String {
        let gb = Double(bytes) / 1e9
        return gb >= 10 ? "\(Int(gb.rounded())) GB" : "\((gb * 10).rounded() / 10) GB"
    }
}
