import Glibc

/// Runs `/bin/sh -c command`, returning its stdout and exit status (stderr passes through).
/// Used only for optional peers (numpy); callers build the command from numbers, never raw user text.
func runShell(_ command: String) -> (output: String, status: Int32) {
    guard let pipe = popen(command, "r") else { return ("", -1) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = fread(&buffer, 1, buffer.count, pipe)
        if n <= 0 { break }
        bytes.append(contentsOf: buffer[0..<n])
    }
    let raw = pclose(pipe)
    let status: Int32 = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
    return (String(decoding: bytes, as: UTF8.self), status)
}

/// The repository's `scripts/` folder: $DGPERF_ROOT/scripts, ./scripts, or next to this source file.
func scriptsDirectory() -> String? {
    var candidates: [String] = []
    if let root = getenv("DGPERF_ROOT") { candidates.append(String(cString: root) + "/scripts") }
    candidates.append("scripts")
    let here = #filePath  // …/Sources/dgperf/Support/Subprocess.swift
    var parts = here.split(separator: "/", omittingEmptySubsequences: false)
    if parts.count > 4 { parts.removeLast(4); candidates.append(parts.joined(separator: "/") + "/scripts") }
    return candidates.first { access($0, R_OK) == 0 }
}
