import Glibc
import Synchronization

/// Ctrl-C handling: the first SIGINT sets a flag that the sweep checks between repetitions and cells
/// (it then writes what finished and exits); a second SIGINT kills the process as usual.
public enum Interrupt {
    private static let flag = Atomic<Bool>(false)

    public static func install() {
        signal(SIGINT) { _ in
            Interrupt.flag.store(true, ordering: .relaxed)
            signal(SIGINT, SIG_DFL)
        }
    }

    public static var requested: Bool { flag.load(ordering: .relaxed) }

    /// For tests: raise or clear the flag as a SIGINT would.
    public static func set(_ value: Bool) { flag.store(value, ordering: .relaxed) }
}
