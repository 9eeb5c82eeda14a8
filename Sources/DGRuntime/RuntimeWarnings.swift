import Glibc
import Synchronization

/// Warnings the runtime prints to stderr at most once per process (per key), so a sweep of hundreds of
/// cells that all degrade the same way prints one line, while each result still records it.
public enum RuntimeWarnings {
    private static let printed = Mutex<Set<String>>([])

    /// Prints "dgperf: warning: <message>" to stderr the first time `key` is seen. Returns whether it printed.
    @discardableResult
    public static func warnOnce(key: String, _ message: String) -> Bool {
        let first = printed.withLock { $0.insert(key).inserted }
        if first {
            let line = "dgperf: warning: \(message)\n"
            _ = line.withCString { write(2, $0, strlen($0)) }
        }
        return first
    }
}

/// Writes one line to stderr (unbuffered, so it never interleaves mid-line with buffered stdout output
/// that was flushed before). Library and CLI code use this instead of each rolling their own.
public func printStandardError(_ line: String) {
    fflush(nil)  // all output streams, stdout included (naming `stdout` is not concurrency-safe in Swift 6)
    let text = line.hasSuffix("\n") ? line : line + "\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
}
