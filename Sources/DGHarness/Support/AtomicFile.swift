import Glibc

/// Whole-file writes that never leave a half-written file: write a temporary sibling, fsync, rename.
public enum AtomicFile {
    public static func write(_ text: String, to path: String) throws {
        let e = Array(text.utf8).withUnsafeBytes { writeRaw($0, to: path) }
        if e != 0 { throw cannotWrite(path, e) }
    }

    public static func read(_ path: String) throws -> String {
        guard let bytes = readRaw(path) else {
            let e = errno
            throw HarnessError(.noInput, e == EISDIR || isDirectory(path)
                ? "cannot read '\(path)' (is it a directory?); pass a results .json file"
                : "cannot read '\(path)': \(String(cString: strerror(e))); check the path")
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The one atomic-write primitive (every caller maps its errno to its own error): write a sibling temp
    /// file, fsync, rename. Returns 0, or the errno of the step that failed (the temp file is removed).
    public static func writeRaw(_ bytes: UnsafeRawBufferPointer, to path: String, mode: mode_t = 0o644) -> Int32 {
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode)
        guard fd >= 0 else { return errno }
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                let e = errno
                close(fd); unlink(tmp)
                return e
            }
            offset += n
        }
        fsync(fd)
        close(fd)
        guard rename(tmp, path) == 0 else {
            let e = errno
            unlink(tmp)
            return e
        }
        return 0
    }

    /// A whole file's bytes, or nil (errno set) when it cannot be opened or read.
    public static func readRaw(_ path: String) -> [UInt8]? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { fread($0.baseAddress!, 1, $0.count, f) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        if ferror(f) != 0 { errno = EISDIR; return nil }
        return out
    }

    /// mkdir -p; throws a clear error when the directory cannot be created or written.
    public static func makeWritableDirectory(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") {
            prefix += part + "/"
            var st = stat()
            if stat(prefix, &st) == 0 {
                guard st.st_mode & S_IFMT == S_IFDIR else {
                    throw HarnessError(.cannotCreate, "cannot create output directory '\(path)': '\(prefix.dropLast())' is a file; choose another --output")
                }
                continue
            }
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw HarnessError(.cannotCreate, "cannot create output directory '\(path)': \(String(cString: strerror(errno))); choose a writable --output")
            }
        }
        let probe = path + "/.dgperf-write-test-\(getpid())"
        let fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else {
            throw HarnessError(.cannotCreate, "output directory '\(path)' is not writable: \(String(cString: strerror(errno))); choose a writable --output")
        }
        close(fd); unlink(probe)
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR
    }

    static func cannotWrite(_ path: String, _ e: Int32) -> HarnessError {
        HarnessError(.cannotCreate, "cannot write '\(path)': \(String(cString: strerror(e))); choose a writable --output")
    }

    /// Names in a directory, sorted (no "." or ".."); empty when it cannot be read.
    public static func list(_ directory: String) -> [String] {
        guard let d = opendir(directory) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }
}
