import FoundationEssentials

/// Reads and writes results files. Every write replaces the whole file atomically, so an interrupted
/// or killed sweep leaves the last complete state behind (what `--resume` continues from).
public struct ResultsStore: Sendable {
    public let directory: String
    /// Extra files rendered from the results on every write, e.g. ("results.csv", csvRenderer).
    public let sidecars: [(String, @Sendable (RunResults) -> String)]

    public init(directory: String, sidecars: [(String, @Sendable (RunResults) -> String)] = []) {
        self.directory = directory; self.sidecars = sidecars
    }

    public var resultsPath: String { directory + "/results.json" }

    public func write(_ results: RunResults) throws {
        try AtomicFile.write(ResultsStore.encode(results), to: resultsPath)
        for (name, render) in sidecars { try AtomicFile.write(render(results), to: directory + "/" + name) }
    }

    public static func encode(_ results: RunResults) -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Finite by construction (Derivation drops non-finite figures); encoding cannot fail otherwise.
        let data = (try? enc.encode(results)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    /// Loads a results file (or `<dir>/results.json` when given a directory) with schema checks and clear errors.
    public static func load(_ path: String) throws -> RunResults {
        let file = AtomicFile.isDirectory(path) ? path + "/results.json" : path
        guard AtomicFile.exists(file) else {
            throw HarnessError(.noInput, "no results file at '\(file)'; pass a results.json written by `dgperf sweep` (or its directory)")
        }
        let text = try AtomicFile.read(file)
        return try decode(text, source: file)
    }

    public static func decode(_ text: String, source: String) throws -> RunResults {
        struct SchemaOnly: Decodable { var schema: String? }
        let data = Data(text.utf8)
        let head: SchemaOnly
        do { head = try JSONDecoder().decode(SchemaOnly.self, from: data) } catch {
            throw HarnessError.data("'\(source)' is not valid JSON (\(JSONErrors.describe(error))); pass a results.json written by `dgperf sweep`")
        }
        guard let schema = head.schema else {
            throw HarnessError.data("'\(source)' has no \"schema\" field, so it is not a dgperf results file; pass a results.json written by `dgperf sweep`")
        }
        guard schema == ResultsSchema.current else {
            throw HarnessError.data("'\(source)' uses schema '\(schema)' but this dgperf reads '\(ResultsSchema.current)'; re-run the sweep with this version (or use the dgperf that wrote it)")
        }
        do { return try JSONDecoder().decode(RunResults.self, from: data) } catch {
            throw HarnessError.data("'\(source)' is a damaged results file (\(JSONErrors.describe(error))); re-run the sweep or restore the file")
        }
    }
}

/// Turns DecodingError into "field 'a.b': what was wrong".
enum JSONErrors {
    static func describe(_ error: Error) -> String {
        func path(_ p: [CodingKey]) -> String {
            var s = ""
            for k in p {
                if let i = k.intValue { s += "[\(i)]" } else { s += (s.isEmpty ? "" : ".") + k.stringValue }
            }
            return p.isEmpty ? "top level" : "field '\(s)'"
        }
        guard let e = error as? DecodingError else { return "\(error)" }
        switch e {
        case .typeMismatch(let type, let ctx): return "\(path(ctx.codingPath)): expected \(typeName(type))"
        case .valueNotFound(let type, let ctx): return "\(path(ctx.codingPath)): missing \(typeName(type))"
        case .keyNotFound(let key, let ctx): return "\(path(ctx.codingPath + [key])): required but missing"
        case .dataCorrupted(let ctx):
            return ctx.codingPath.isEmpty ? "malformed JSON" : "\(path(ctx.codingPath)): \(ctx.debugDescription)"
        @unknown default: return "\(e)"
        }
    }
    static func typeName(_ t: Any.Type) -> String {
        let s = "\(t)"
        if s.hasPrefix("Array<") || s.hasPrefix("[") { return "a list" }
        if s.contains("Int") { return "an integer" }
        if s.contains("Double") { return "a number" }
        if s.contains("String") { return "a string" }
        if s.contains("Bool") { return "true or false" }
        return "an object"
    }
}

