/// A rendered-format-independent table: reporters build one, `TableFormat` prints it.
public struct Table: Sendable, Equatable {
    public enum Align: Sendable { case left, right }
    public var title: String
    public var columns: [(name: String, align: Align)] {
        get { zip(columnNames, alignments).map { ($0, $1) } }
        set { columnNames = newValue.map(\.name); alignments = newValue.map(\.align) }
    }
    public var columnNames: [String]
    public var alignments: [Align]
    public var rows: [[String]]
    /// Lines printed under the table (legend, skipped cells, caveats).
    public var notes: [String]

    public init(title: String, columns: [(String, Align)], rows: [[String]] = [], notes: [String] = []) {
        self.title = title; columnNames = columns.map(\.0); alignments = columns.map(\.1); self.rows = rows; self.notes = notes
    }

    public static func == (a: Table, b: Table) -> Bool {
        a.title == b.title && a.columnNames == b.columnNames && a.rows == b.rows && a.notes == b.notes
    }
}

public enum TableFormat: String, CaseIterable, Sendable {
    case markdown, latex, csv

    public func render(_ t: Table) -> String {
        switch self {
        case .markdown: return TableFormat.markdown(t)
        case .latex: return TableFormat.latex(t)
        case .csv: return TableFormat.csv(t)
        }
    }

    static func markdown(_ t: Table) -> String {
        let esc = { (s: String) in s.replacingAll("|", with: "\\|") }
        let widths = t.columnNames.indices.map { i in
            max(3, ([esc(t.columnNames[i])] + t.rows.map { i < $0.count ? esc($0[i]) : "" }).map(\.count).max() ?? 3)
        }
        func line(_ cells: [String]) -> String {
            "| " + cells.indices.map { i in
                t.alignments[i] == .right ? Format.pad(cells[i], widths[i]) : Format.padRight(cells[i], widths[i])
            }.joined(separator: " | ") + " |"
        }
        var out = t.title.isEmpty ? "" : "**\(t.title)**\n\n"
        out += line(t.columnNames.map(esc)) + "\n"
        out += "| " + widths.indices.map { i in
            t.alignments[i] == .right ? String(repeating: "-", count: widths[i] - 1) + ":" : String(repeating: "-", count: widths[i])
        }.joined(separator: " | ") + " |\n"
        for r in t.rows { out += line(t.columnNames.indices.map { $0 < r.count ? esc(r[$0]) : "" }) + "\n" }
        if !t.notes.isEmpty { out += "\n" + t.notes.map { "- \($0)" }.joined(separator: "\n") + "\n" }
        return out
    }

    static func latex(_ t: Table) -> String {
        func esc(_ s: String) -> String {
            var o = ""
            for ch in s {
                switch ch {
                case "&", "%", "$", "#", "_", "{", "}": o += "\\\(ch)"
                case "±": o += "$\\pm$"
                case "×": o += "$\\times$"
                case "≥": o += "$\\geq$"
                case "≤": o += "$\\leq$"
                case "<": o += "$<$"
                case ">": o += "$>$"
                case "–", "—": o += "--"
                case "·": o += "$\\cdot$"
                case "…": o += "\\ldots{}"
                default: o.append(ch)
                }
            }
            return o
        }
        let spec = t.alignments.map { $0 == .right ? "r" : "l" }.joined()
        var out = "% \(esc(t.title))\n\\begin{tabular}{\(spec)}\n\\toprule\n"
        out += t.columnNames.map(esc).joined(separator: " & ") + " \\\\\n\\midrule\n"
        for r in t.rows { out += t.columnNames.indices.map { $0 < r.count ? esc(r[$0]) : "" }.joined(separator: " & ") + " \\\\\n" }
        out += "\\bottomrule\n\\end{tabular}\n"
        for n in t.notes { out += "% \(esc(n))\n" }
        return out
    }

    static func csv(_ t: Table) -> String {
        var out = CSV.line(t.columnNames) + "\n"
        for r in t.rows { out += CSV.line(r) + "\n" }
        return out
    }
}

enum CSV {
    static func field(_ s: String) -> String {
        s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingAll("\"", with: "\"\"") + "\"" : s
    }
    static func line(_ fields: [String]) -> String { fields.map(field).joined(separator: ",") }
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var o = ""
        for ch in self { if ch == target { o += replacement } else { o.append(ch) } }
        return o
    }
}
