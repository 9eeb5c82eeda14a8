/// A GitHub-flavoured Markdown table with columns padded to line up in a terminal too.
public enum MarkdownTable {
    public static func render(header: [String], rows: [[String]]) -> String {
        let cols = header.count
        var widths = header.map { $0.count }
        for r in rows { for (i, cell) in r.prefix(cols).enumerated() { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            "| " + (0..<cols).map { i in Format.padRight(i < cells.count ? cells[i] : "", widths[i]) }.joined(separator: " | ") + " |"
        }
        var out = [line(header), "|" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "|") + "|"]
        out += rows.map(line)
        return out.joined(separator: "\n")
    }
}
