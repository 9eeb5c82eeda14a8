import ArgumentParser
import DGHarness
import DGReport
import Glibc

/// `dgperf plot`: SVG figures (PNG too when rsvg-convert or ImageMagick is installed).
struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot",
        abstract: "Write speedup-vs-active-fraction, time-vs-FLOPs and thread-scaling plots (SVG, PNG if possible).",
        discussion: """
        Examples:
          dgperf plot results/20250101-120000-host/results.json            # next to results.json
          dgperf plot results/…/results.json --output docs/img --no-png
          dgperf plot --roofline prof.json --output roofline.svg      # from `dgperf profile --output prof.json`
        """
    )
    @Argument(help: "results.json (or its directory).") var results: String?
    @Option(help: "Directory for the figures (default: the results directory); with --roofline, the SVG file.") var output: String?
    @Flag(help: "Do not convert to PNG.") var noPng = false
    @Option(help: "A profile JSON (`dgperf profile --output`): plot its phases on the measured roofline.") var roofline: String?

    func validate() throws {
        guard (results == nil) != (roofline == nil) else {
            throw ValidationError("pass either a results.json or --roofline PROFILE.json (exactly one)")
        }
    }

    func run() throws {
        if let roofline {
            try reportingHarnessErrors {
                let report = try ProfileReport.load(roofline)
                let svg = output ?? (roofline.hasSuffix(".json") ? String(roofline.dropLast(5)) : roofline) + "-roofline.svg"
                try AtomicFile.write(RooflinePlot.svg(report), to: svg)
                print(svg)
            }
            return
        }
        let results = self.results!
        try reportingHarnessErrors {
            let r = try ResultsStore.load(results)
            let dir = output ?? (AtomicFile.isDirectory(results) ? results : String(results.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")))
            let outDir = dir.isEmpty ? "." : dir
            try AtomicFile.makeWritableDirectory(outDir)
            let (figures, skipped) = Plots.all(r)
            let converter = noPng ? nil : PNGConverter.find()
            for f in figures {
                let svg = outDir + "/" + f.name + ".svg"
                try AtomicFile.write(f.svg, to: svg)
                print(svg)
                if let converter {
                    let png = outDir + "/" + f.name + ".png"
                    if converter.convert(svg, png) { print(png) } else { printErr("note: \(converter.name) could not convert \(svg)") }
                }
            }
            for s in skipped { printErr("not plotted: \(s)") }
            if converter == nil && !noPng { printErr("note: no rsvg-convert or convert on PATH, wrote SVG only") }
            if figures.isEmpty { throw HarnessError(.data, "nothing to plot in '\(results)': no measured cells") }
        }
    }
}

/// Runs an SVG→PNG converter found on PATH.
struct PNGConverter {
    var name: String
    var path: String

    static func find() -> PNGConverter? {
        guard let p = getenv("PATH") else { return nil }
        let dirs = String(decoding: UnsafeRawBufferPointer(start: p, count: strlen(p)), as: UTF8.self).split(separator: ":")
        for tool in ["rsvg-convert", "convert"] {
            for d in dirs where access("\(d)/\(tool)", X_OK) == 0 { return PNGConverter(name: tool, path: "\(d)/\(tool)") }
        }
        return nil
    }

    func convert(_ svg: String, _ png: String) -> Bool {
        let args = name == "rsvg-convert" ? [path, "-o", png, svg] : [path, svg, png]
        var cargs = args.map { strdup($0) } + [nil]
        defer { for a in cargs { free(a) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, path, nil, nil, &cargs, environ) == 0 else { return false }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return status == 0
    }
}
