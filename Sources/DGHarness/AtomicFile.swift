import Glibc

/// Whole-file writes that never leave a half-written file: write a temporary sibling, fsync, rename.
public enum AtomicFile {
    public static func write(_ text: String, to path: String) throws {
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw cannotWrite(path, errno) }
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                let e = errno
                close(fd); unlink(tmp)
                throw cannotWrite(path, e)
            }
            offset += n
        }
        bytes.removeAll()
        fsync(fd)
        close(fd)
        guard rename(tmp, path) == 0 else {
            let e = errno
            unlink(tmp)
            throw cannotWrite(path, e)
        }
    }

    public static func read(_ path: String) throws -> String {
        guard let f = fopen(path, "rb") else {
            throw HarnessError(.noInput, "cannot read '\(path)': \(String(cString: strerror(errno))); check the path")
        }
        defer { fclose(f) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { fread($0.baseAddress!, 1, $0.count, f) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        if ferror(f) != 0 {
            throw HarnessError(.noInput, "cannot read '\(path)' (is it a directory?); pass a results .json file")
        }
        return String(decoding: out, as: UTF8.self)
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
}
