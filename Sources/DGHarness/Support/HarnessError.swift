/// A user-facing failure: one message that names the problem and the fix, and the exit code the CLI uses.
/// Exit codes follow sysexits.h so scripts can tell bad usage from bad files from unwritable outputs.
public struct HarnessError: Error, CustomStringConvertible, Equatable {
    public enum Kind: Int32, Sendable {
        /// Bad flag value or combination (EX_USAGE).
        case usage = 64
        /// A file exists but its content is wrong: malformed JSON, other schema version (EX_DATAERR).
        case data = 65
        /// An input file is missing or unreadable (EX_NOINPUT).
        case noInput = 66
        /// The machine cannot do what was asked (no kernel, unoptimised build) (EX_SOFTWARE).
        case software = 70
        /// An output cannot be created (EX_CANTCREAT).
        case cannotCreate = 73
    }
    public var kind: Kind
    public var message: String
    public init(_ kind: Kind, _ message: String) { self.kind = kind; self.message = message }
    public var exitCode: Int32 { kind.rawValue }
    public var description: String { message }

    static func usage(_ m: String) -> HarnessError { HarnessError(.usage, m) }
    static func data(_ m: String) -> HarnessError { HarnessError(.data, m) }
}
