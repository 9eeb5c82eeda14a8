import DGRuntime
import FoundationEssentials
import Glibc

/// Linear time model of the two kernels every sparse strategy is made of, calibrated on this machine:
/// - GEMM call: `gemmCall + paddedMACs·gemmMAC + packedFloats·gemmPack`, where padded MACs round m and n up
///   to the register tile (the micro-kernel always runs full MR×NR tiles) and packed floats are n·k for B plus m·k
///   for A unless the call reads A in place (≤ `GemmEngine.inPlacePanelLimit` B panels, or a half panel);
/// - gemv call: `gemvCall + ⌊rows/4⌋·4·k·gemvMAC + (rows mod 4)·k·gemvRowMAC` (one matrix-vector product over
///   contiguous weight rows; the kernel runs rows in fours, leftovers one at a time — latency-bound, slower per MAC);
/// - memory pass (zeroing/copying outputs): `bytes·passByte`;
/// - weight-rows GEMM (`GemmEngine.gemmWeightRows`, W's rows read in place, activations packed):
///   `rowsCall + paddedMACs·rowsMAC + (m·k + m·n)·rowsTouch`, padded MACs rounding n up to MR and m up to NR
///   (its tiles are MR units × NR samples), touched floats = activations packed + outputs transposed;
/// - multi-sample gathered gemv: `multiCall + n·k·multiRowFloat + m·n·k·multiMAC` (W's rows read once, each
///   sample's dot products at dot-product speed);
/// - unit-major dot products (`rowSamplesGemv`: rows × the n samples that use them):
///   `n·k·(dotMAC(x bytes) + (rows − 1)·dotMACHot)`, the seconds per MAC measured on whole per-sample layers (every
///   row of a 6.4 MB W against its random users) for a batch whose x lies in L2 (32 samples) and one whose x does not
///   (256), interpolated in between: each MAC loads a fresh vector of x, so where x lives sets the rate (calibrated
///   on small calls with x hot it predicted 0.2 ms for a 0.36 ms layer, and 2.9 ms for one that took 5.1 ms). The
///   further rows of a block find their four samples' x in L1: `dotMACHot`, measured on 4-unit blocks.
/// Per-sample strategies are predicted by summing these over the calls they would make for the actual mask.
public struct SparseCostModel: Sendable, Codable, Equatable {
    public var fingerprint: String
    public var mr: Int
    public var nr: Int
    public var gemmCall: Double
    public var gemmMAC: Double
    public var gemmPack: Double
    public var gemvCall: Double
    public var gemvMAC: Double
    /// Seconds per MAC of a leftover single row (one accumulator chain).
    public var gemvRowMAC: Double
    public var passByte: Double
    /// Measured / predicted time of a unit-major group call (row-gathered A, compact tile, row scatter), ≥ 1:
    /// what the contiguous calibration shapes miss about small gathered GEMMs.
    public var gatherFactor: Double
    public var rowsCall: Double
    public var rowsMAC: Double
    public var rowsTouch: Double
    public var multiCall: Double
    public var multiRowFloat: Double
    public var multiMAC: Double
    /// Seconds per MAC of the dot kernel with x of `dotNearBytes` (in L2) and of `dotFarBytes` (beyond it).
    public var dotMACNear: Double
    public var dotMACFar: Double
    public var dotNearBytes: Double
    public var dotFarBytes: Double
    /// Seconds per MAC of the rows after a block's first (x in L1).
    public var dotMACHot: Double
    /// How the sparse per-sample strategies scale over this engine's workers relative to each other (nil on one worker):
    /// the terms above are one core's, and a prediction divides them over the workers.
    public var scaling: PerSampleScaling?

    public init(fingerprint: String, mr: Int, nr: Int, gemmCall: Double, gemmMAC: Double, gemmPack: Double,
                gemvCall: Double, gemvMAC: Double, gemvRowMAC: Double, passByte: Double, gatherFactor: Double = 1,
                rowsCall: Double = 0, rowsMAC: Double = 0, rowsTouch: Double = 0,
                multiCall: Double = 0, multiRowFloat: Double = 0, multiMAC: Double = 0,
                dotMACNear: Double = 0, dotMACFar: Double = 0, dotNearBytes: Double = 0, dotFarBytes: Double = 0,
                dotMACHot: Double = 0) {
        self.fingerprint = fingerprint; self.mr = mr; self.nr = nr
        self.gemmCall = gemmCall; self.gemmMAC = gemmMAC; self.gemmPack = gemmPack
        self.gemvCall = gemvCall; self.gemvMAC = gemvMAC; self.gemvRowMAC = gemvRowMAC; self.passByte = passByte
        self.gatherFactor = gatherFactor
        self.rowsCall = rowsCall; self.rowsMAC = rowsMAC; self.rowsTouch = rowsTouch
        self.multiCall = multiCall; self.multiRowFloat = multiRowFloat; self.multiMAC = multiMAC
        self.dotMACNear = dotMACNear; self.dotMACFar = dotMACFar
        self.dotNearBytes = dotNearBytes; self.dotFarBytes = dotFarBytes; self.dotMACHot = dotMACHot
    }

    /// Seconds for one serial `GemmEngine.gemm` call of this shape (m = 1 takes the gemv path).
    /// `packedB`: the weights were packed beforehand, so only A is packed per call.
    /// `panelWidth`: columns per B panel when not NR (a half-panel kernel pads n to NR/2).
    public func gemmSeconds(m: Int, n: Int, k: Int, packedB: Bool = false, panelWidth: Int? = nil) -> Double {
        guard m > 0 && n > 0 && k > 0 else { return 0 }
        if m == 1 && panelWidth == nil { return gemvSeconds(rows: n, k: k) }
        let w = panelWidth ?? nr
        let padded = Double((m + mr - 1) / mr * mr) * Double((n + w - 1) / w * w) * Double(k)
        return gemmCall + padded * gemmMAC + Double(Self.packedFloats(m: m, n: n, k: k, nr: nr, packedB: packedB,
                                                                      aInPlace: panelWidth != nil)) * gemmPack
    }

    /// Floats a GEMM call packs: B's n·k unless pre-packed, A's m·k unless A is read in place (as `GemmEngine` does
    /// for blocks over ≤ `inPlacePanelLimit` B panels; the half-panel kernel always does).
    static func packedFloats(m: Int, n: Int, k: Int, nr: Int, packedB: Bool, aInPlace: Bool = false) -> Int {
        let inPlace = aInPlace || (n + nr - 1) / nr <= GemmEngine.inPlacePanelLimit
        return ((packedB ? 0 : n) + (inPlace ? 0 : m)) * k
    }

    /// Seconds for one serial `GemmEngine.gemmWeightRows` call (m samples, n weight rows, depth k).
    public func weightRowsSeconds(m: Int, n: Int, k: Int) -> Double {
        guard m > 0 && n > 0 && k > 0 else { return 0 }
        let padded = Double((n + mr - 1) / mr * mr) * Double((m + nr - 1) / nr * nr) * Double(k)
        return rowsCall + padded * rowsMAC + Double(m * k + m * n) * rowsTouch
    }

    /// Seconds for one serial multi-sample gathered gemv (`indexedGemvMulti`): m samples, n weight rows, depth k.
    /// Not a candidate for one sample (the batch-1 kernels serve that), beyond `multiGemvMaxBatch` samples, or when
    /// uncalibrated.
    public func multiGemvSeconds(m: Int, n: Int, k: Int) -> Double {
        guard m >= 2 && m <= Self.multiGemvMaxBatch && n > 0 && k > 0 && multiMAC > 0 else { return .infinity }
        return multiCall + Double(n * k) * multiRowFloat + Double(m * n * k) * multiMAC
    }

    /// The multi-sample gemv as a few leftover rows of a large-batch packed gather: the calibrated linear model scaled
    /// by 1.7, the ratio measured where it was extrapolated to B = 256 (178 µs against 107 µs predicted).
    public func multiGemvTailSeconds(m: Int, n: Int, k: Int) -> Double {
        guard m >= 1 && n > 0 && k > 0 && multiMAC > 0 else { return .infinity }
        let rows = (n + 3) / 4 * 4  // four-row groups; an edge group repeats its last row
        return multiCall + Double(n * k) * multiRowFloat + 1.7 * Double(m * rows * k) * multiMAC
    }

    /// The multi-sample gemv is calibrated on 2 … 16 samples, whose rows stay in L1/L2 while W streams. Past that
    /// every four-row group re-reads all the samples' rows and the linear model stops holding: extrapolated to
    /// B = 256 it predicted 107 µs where the kernel took 178 µs (weight rows: 118 µs), and `auto` picked it.
    public static let multiGemvMaxBatch = 16

    /// Seconds for the dot kernel over `pairs` (sample, block) pairs of `rows`-unit blocks, depth k, x of `xBytes`.
    public func unitDotsSeconds(pairs: Int, rows: Int, k: Int, xBytes: Int) -> Double {
        guard pairs > 0 else { return 0 }
        return Double(pairs * k) * (dotSecondsPerMAC(xBytes: xBytes) + Double(rows - 1) * dotMACHot)
    }

    /// Seconds per MAC of `rowSamplesGemv` in a layer whose activations x take `xBytes` (infinite when uncalibrated).
    public func dotSecondsPerMAC(xBytes: Int) -> Double {
        guard dotMACNear > 0 && dotMACFar > 0 && dotFarBytes > dotNearBytes else { return .infinity }
        let f = min(1, max(0, (Double(xBytes) - dotNearBytes) / (dotFarBytes - dotNearBytes)))
        return dotMACNear + f * (dotMACFar - dotMACNear)
    }

    /// A sparse per-sample strategy's scaling on this engine's workers relative to the best-scaling one (1 when
    /// unmeasured; see `PerSampleScaling`).
    public func scalingFactor(_ strategy: SparseStrategy, batch: Int) -> Double {
        scaling?.factor(strategy, batch: batch) ?? 1
    }

    public func gemvSeconds(rows: Int, k: Int) -> Double {
        guard rows > 0 && k > 0 else { return 0 }
        return gemvCall + Double(rows / 4 * 4 * k) * gemvMAC + Double(rows % 4 * k) * gemvRowMAC
    }

    public func passSeconds(bytes: Int) -> Double { Double(bytes) * passByte }

    /// Identifies the machine and configuration a calibration is valid for.
    public static func fingerprint(kernels: KernelSet, workers: Int, cpu: CPUFeatures = .current) -> String {
        "\(cpu.vendor) \(cpu.brand) family \(cpu.family) model \(cpu.model) | \(kernels.name) | \(kernels.blocking) | workers \(workers) | model v18"
    }

    /// Cached model for this fingerprint, or a fresh calibration (then cached; cache errors are ignored). `extend` adds
    /// what only the caller can measure to a fresh calibration before it is cached (the engine: its workers' scaling).
    public static func loadOrCalibrate(kernels: KernelSet, workers: Int, cache: SparseCostModelCache?,
                                       extend: ((SparseCostModel) -> SparseCostModel)? = nil) -> SparseCostModel {
        let fp = fingerprint(kernels: kernels, workers: workers)
        if let cached = cache?.load(fingerprint: fp) { return cached }
        var model = calibrate(kernels: kernels, fingerprint: fp)
        if let extend { model = extend(model) }
        cache?.store(model)
        return model
    }

    /// Passes over the calibration's measurements; each keeps its best time over them (see `calibrate`).
    public static let calibrationPasses = 3

    /// Short micro-measurement (about 0.2 s): a few GEMM and gemv shapes on one core, least-squares fitted.
    public static func calibrate(kernels: KernelSet, fingerprint: String) -> SparseCostModel {
        let engine = GemmEngine(kernels: kernels)
        // W spans 6.4 MB (beyond L2), like the wide layers whose rows sample-major streams per sample.
        let maxM = 96, k = 784, rowsW = 2048
        var rng = SplitMix64(seed: 7)
        let a = (0..<(maxM * k)).map { _ in rng.nextFloat() - 0.5 }
        let w = (0..<(rowsW * k)).map { _ in rng.nextFloat() - 0.5 }
        var c = [Float](repeating: 0, count: maxM * rowsW)

        // Best of several timed batches; each batch lasts ≥ ~0.3 ms so the clock resolution does not matter. The
        // whole sequence runs `calibrationPasses` times and every measurement keeps its best over the passes: five
        // batches back to back all fall into one slow spell of a shared machine, and one calibration here read the
        // GEMM at 59 GMAC/s (114 otherwise) while the dot kernel read normal, which sent auto to the wrong strategy
        // until the cache was deleted. Noise only ever slows a measurement, so the minimum converges.
        let minima = PassMinima()
        func best(_ body: () -> Void) -> Double {
            body()
            let single = max(timeSeconds(body), 1e-8)
            let inner = max(1, Int(3e-4 / single))
            var t = Double.infinity
            for _ in 0..<5 {
                let s = timeSeconds { for _ in 0..<inner { body() } }
                t = min(t, s / Double(inner))
            }
            return minima.keep(t)
        }

        var gemmRows: [([Double], Double)] = []
        var weightRows: [([Double], Double)] = []
        var multiRows: [([Double], Double)] = []
        var gemvRows: [([Double], Double)] = []
        var passTime = 0.0, gatherTime = 0.0
        let passCount = 1 << 18
        // The dot-kernel terms, measured in the same passes (copied into the model after the fit).
        var dots = SparseCostModel(fingerprint: fingerprint, mr: kernels.mr, nr: kernels.nr, gemmCall: 0, gemmMAC: 0,
                                   gemmPack: 0, gemvCall: 0, gemvMAC: 0, gemvRowMAC: 0, passByte: 0)
        for _ in 0..<calibrationPasses {
            minima.rewind()
            gemmRows = []; weightRows = []; multiRows = []; gemvRows = []
            a.withUnsafeBufferPointer { ap in
                w.withUnsafeBufferPointer { wp in
                    c.withUnsafeMutableBufferPointer { cp in
                        let ab = ap.baseAddress!, wb = wp.baseAddress!, cb = cp.baseAddress!
                        for (m, n, kk) in [(96, 128, 784), (48, 64, 784), (12, 32, 784), (6, 32, 64), (24, 256, 128), (6, 32, 8)] {
                            let t = best {
                                engine.gemm(m: m, n: n, k: kk, a: .rowMajor(ab, ld: k), b: .rowMajor(wb, ld: k, transposed: true),
                                            c: OutputOperand(base: cb, rowStride: n))
                            }
                            let padded = Double((m + kernels.mr - 1) / kernels.mr * kernels.mr)
                                * Double((n + kernels.nr - 1) / kernels.nr * kernels.nr) * Double(kk)
                            gemmRows.append(([1, padded, Double(packedFloats(m: m, n: n, k: kk, nr: kernels.nr, packedB: false))], t))
                        }
                        // Weight-rows GEMMs over scattered rows of W (a shared unit mask), batch 8 … 96.
                        let unitIds = (0..<rowsW).map { Int32($0) }.filter { $0 % 3 == 0 }
                        unitIds.withUnsafeBufferPointer { ids in
                            for (m, n, kk) in [(32, 128, 784), (96, 60, 784), (64, 330, 784), (8, 48, 784), (32, 12, 128), (17, 600, 64)] {
                                let t = best {
                                    engine.gemmWeightRows(m: m, n: n, k: kk, a: .rowMajor(ab, ld: k), w: wb, ldw: k, wRows: ids.baseAddress,
                                                          c: OutputOperand(base: cb, rowStride: n))
                                }
                                let padded = Double((n + kernels.mr - 1) / kernels.mr * kernels.mr)
                                    * Double((m + kernels.nr - 1) / kernels.nr * kernels.nr) * Double(kk)
                                weightRows.append(([1, padded, Double(m * kk + m * n)], t))
                            }
                        }
                        // Multi-sample gathered gemv over scattered rows of W (W spans 6.4 MB: rows come from L3, as they do
                        // from a wide layer), batch 2 … 16.
                        unitIds.withUnsafeBufferPointer { ids in
                            for (m, n, kk) in [(2, 128, 784), (4, 256, 784), (8, 128, 784), (16, 64, 784), (3, 600, 784), (2, 12, 64)] {
                                let t = best {
                                    kernels.indexedGemvMulti(n, kk, wb, k, ids.baseAddress!, m, ab, k, cb, n, false, nil, false)
                                }
                                multiRows.append(([1, Double(n * kk), Double(m * n * kk)], t))
                            }
                        }
                        // gemv cycling over the whole weight matrix (as per-sample paths stream it), and tiny calls.
                        for (rows, kk) in [(512, 784), (64, 784), (4, 16), (1, 784)] {
                            var offset = 0
                            let t = best {
                                kernels.gemv(rows, kk, wb + offset * k, k, ab, cb, 0, nil, false)
                                offset = (offset + rows) % (rowsW - rows + 1)
                            }
                            gemvRows.append(([1, Double(rows * kk)], t))
                        }
                        passTime = best { cb.update(repeating: 0, count: min(passCount, maxM * rowsW)) }
                        // A unit-major group as the per-sample path runs it: 16 scattered rows × 32 units.
                        let rows = (0..<16).map { Int32(($0 * 37) % maxM) }
                        let tile = AlignedBuffer(capacity: 16 * 32)
                        gatherTime = rows.withUnsafeBufferPointer { rp in
                            best {
                                engine.gemm(m: 16, n: 32, k: k, a: MatrixOperand(base: ab, rowStride: k, colStride: 1, rowIndex: rp.baseAddress),
                                            b: .rowMajor(wb, ld: k, transposed: true), c: OutputOperand(base: tile.pointer, rowStride: 32))
                                for i in 0..<16 { (cb + Int(rp[i]) * rowsW).update(from: tile.pointer + i * 32, count: 32) }
                            }
                        }
                    }
                }
            }
            calibrateDots(&dots, kernels: kernels, w: w, rowsW: rowsW, k: k, best: best)
        }
        let g = leastSquares(gemmRows, parameters: 3)
        let v = leastSquares(Array(gemvRows.prefix(3)), parameters: 2)  // whole groups of four rows
        let single = max(0, (gemvRows[3].1 - v[0]) / 784)                 // one leftover row, k = 784
        var model = SparseCostModel(fingerprint: fingerprint, mr: kernels.mr, nr: kernels.nr,
                                    gemmCall: g[0], gemmMAC: g[1], gemmPack: g[2], gemvCall: v[0], gemvMAC: v[1], gemvRowMAC: single,
                                    passByte: passTime / Double(4 * min(passCount, maxM * rowsW)))
        model.gatherFactor = min(4, max(1, gatherTime / max(model.gemmSeconds(m: 16, n: 32, k: k), 1e-12)))
        let r = leastSquares(weightRows, parameters: 3)
        model.rowsCall = r[0]; model.rowsMAC = r[1]; model.rowsTouch = r[2]
        let mg = leastSquares(multiRows, parameters: 3)
        model.multiCall = mg[0]; model.multiRowFloat = mg[1]; model.multiMAC = max(mg[2], 1e-13)
        model.dotMACNear = dots.dotMACNear; model.dotNearBytes = dots.dotNearBytes
        model.dotMACFar = dots.dotMACFar; model.dotFarBytes = dots.dotFarBytes; model.dotMACHot = dots.dotMACHot
        return model
    }

    /// Unit-major dot products as a per-sample layer runs them: every row of W (6.4 MB, so from L3) dotted with its
    /// random users (each sample uses each block with probability 0.1), for unit gates at batches of 32 (x in L2) and
    /// 256, and 4-unit blocks at 32 (their further rows' rate).
    static func calibrateDots(_ model: inout SparseCostModel, kernels: KernelSet, w: [Float], rowsW: Int, k: Int,
                              best: (() -> Void) -> Double) {
        var rng = SplitMix64(seed: 11)
        for (batch, g) in [(32, 1), (256, 1), (32, 4)] {
            let x = (0..<(batch * k)).map { _ in rng.nextFloat() - 0.5 }
            var offsets = [0], users: [Int32] = []
            for _ in 0..<(rowsW / g) {
                for b in 0..<batch where rng.next() % 10 == 0 { users.append(Int32(b)) }
                offsets.append(users.count)
            }
            var y = [Float](repeating: 0, count: batch * rowsW)
            let t = x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in users.withUnsafeBufferPointer { up in
                y.withUnsafeMutableBufferPointer { yp in
                    best {
                        for j in 0..<(rowsW / g) where offsets[j + 1] > offsets[j] {
                            kernels.rowSamplesGemv(g, offsets[j + 1] - offsets[j], k, wp.baseAddress! + j * g * k, k,
                                                   up.baseAddress! + offsets[j], xp.baseAddress!, k, yp.baseAddress! + j * g, rowsW, nil, false)
                        }
                    }
                }
            } } }
            // Seconds per (sample, block) pair and input feature: g rows, the first at the near or far rate.
            let perPair = t / Double(max(1, users.count * k))
            switch (batch, g) {
            case (32, 1): model.dotMACNear = perPair; model.dotNearBytes = Double(4 * batch * k)
            case (256, 1): model.dotMACFar = max(perPair, model.dotMACNear); model.dotFarBytes = Double(4 * batch * k)
            default: model.dotMACHot = max(1e-14, (perPair - model.dotMACNear) / Double(g - 1))
            }
        }
    }

    /// Non-negative least squares in relative error (rows scaled by 1/t), by normal equations and clamping.
    static func leastSquares(_ rows: [([Double], Double)], parameters p: Int) -> [Double] {
        var active = [Bool](repeating: true, count: p)
        var x = [Double](repeating: 0, count: p)
        for _ in 0..<p {
            var ata = [[Double]](repeating: [Double](repeating: 0, count: p), count: p)
            var atb = [Double](repeating: 0, count: p)
            for (f, t) in rows {
                let s = 1 / max(t, 1e-12)
                for i in 0..<p where active[i] {
                    atb[i] += f[i] * s * s * t
                    for j in 0..<p where active[j] { ata[i][j] += f[i] * s * f[j] * s }
                }
            }
            for i in 0..<p where !active[i] { ata[i][i] = 1; atb[i] = 0 }
            x = solve(ata, atb)
            guard let neg = x.indices.first(where: { x[$0] < 0 }) else { break }
            active[neg] = false
        }
        return x.map { max($0, 0) }
    }

    /// Gaussian elimination with partial pivoting for a small dense system.
    static func solve(_ a0: [[Double]], _ b0: [Double]) -> [Double] {
        var a = a0, b = b0
        let n = b.count
        for col in 0..<n {
            let piv = (col..<n).max { abs(a[$0][col]) < abs(a[$1][col]) }!
            a.swapAt(col, piv); b.swapAt(col, piv)
            let d = a[col][col]
            guard abs(d) > 1e-300 else { continue }
            for r in (col + 1)..<n where r < n {
                let f = a[r][col] / d
                for j in col..<n { a[r][j] -= f * a[col][j] }
                b[r] -= f * b[col]
            }
        }
        var x = [Double](repeating: 0, count: n)
        for r in stride(from: n - 1, through: 0, by: -1) {
            var s = b[r]
            for j in (r + 1)..<n where j < n { s -= a[r][j] * x[j] }
            x[r] = abs(a[r][r]) > 1e-300 ? s / a[r][r] : 0
        }
        return x
    }
}

/// A small JSON file mapping machine fingerprints to calibrated models:
/// `$XDG_CACHE_HOME/dgperf/sparse-cost-model.json`, else `~/.cache/dgperf/…`.
/// Reading or writing never fails a run: an unreadable cache means calibrate, an unwritable one means don't store.
public struct SparseCostModelCache: Sendable {
    public var path: String

    public init(path: String) { self.path = path }

    public static var `default`: SparseCostModelCache? {
        let env = ProcessInfo.processInfo.environment
        if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty {
            return SparseCostModelCache(path: xdg + "/dgperf/sparse-cost-model.json")
        }
        if let home = env["HOME"], !home.isEmpty {
            return SparseCostModelCache(path: home + "/.cache/dgperf/sparse-cost-model.json")
        }
        return nil
    }

    func loadAll() -> [String: SparseCostModel] {
        guard let data = FileManager.default.contents(atPath: path),
              let all = try? JSONDecoder().decode([String: SparseCostModel].self, from: data) else { return [:] }
        return all
    }

    public func load(fingerprint: String) -> SparseCostModel? { loadAll()[fingerprint] }

    /// Adds `model` to the file (temp file + rename, so readers never see a partial file).
    public func store(_ model: SparseCostModel) {
        var all = loadAll()
        all[model.fingerprint] = model
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let data = try? encoder.encode(all) else { return }
        let dir = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        let fm = FileManager.default
        if !dir.isEmpty { try? fm.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        let tmp = path + ".tmp-\(getpidSafe())"
        guard fm.createFile(atPath: tmp, contents: data) else { return }
        if rename(tmp, path) != 0 { try? fm.removeItem(atPath: tmp) }  // rename(2) replaces atomically
    }

    private func getpidSafe() -> Int { Int(getpid()) }
}

/// How the sparse per-sample strategies scale over an engine's workers relative to each other: measured over predicted
/// time of each, at two batch sizes (a unit-gate layer, H = 2048, r = 0.1; unit-major GEMMs on 16-unit blocks), divided
/// by the smallest of them at that batch, interpolated in log batch. The calibrated terms are one core's and a
/// prediction divides them over the workers; on 16 Xeon cores sample-major then scaled 10.6× and the dot kernel, at
/// B = 32, far less, so `auto` picked the dots where sample-major was 1.4–2× faster. Relative, because on a busy VM
/// the same calibration read 12–59× for all three strategies at once (absolute factors would have sent every layer to
/// dense-then-mask), and dense-then-mask itself stays unscaled: where a factor errs, `auto` errs towards it (scaled
/// too, at 3.6× on 16 Xeon cores, it let unit-major GEMMs 18–25 % slower than dense-then-mask through).
public struct PerSampleScaling: Sendable, Codable, Equatable {
    public static let batches = [32, 256]
    public var unitMajor: [Double]
    public var unitMajorDots: [Double]
    public var sampleMajor: [Double]

    public init(unitMajor: [Double], unitMajorDots: [Double], sampleMajor: [Double]) {
        self.unitMajor = unitMajor; self.unitMajorDots = unitMajorDots; self.sampleMajor = sampleMajor
    }

    /// The strategy's time relative to the best-scaling one at this batch (1 … 8; 1 when unmeasured).
    public func factor(_ strategy: SparseStrategy, batch: Int) -> Double {
        let v: [Double]
        switch strategy {
        case .unitMajor: v = unitMajor
        case .unitMajorDots: v = unitMajorDots
        case .sampleMajor: v = sampleMajor
        default: return 1
        }
        // Called for every prediction of every per-sample call: no arrays built here.
        @inline(__always) func valid(_ v: [Double]) -> Bool { v.count == 2 && v[0].isFinite && v[0] > 0 && v[1].isFinite && v[1] > 0 }
        @inline(__always) func best(_ i: Int) -> Double {
            var m = Double.infinity
            if valid(unitMajor) { m = min(m, unitMajor[i]) }
            if valid(unitMajorDots) { m = min(m, unitMajorDots[i]) }
            if valid(sampleMajor) { m = min(m, sampleMajor[i]) }
            return m
        }
        guard valid(v) else { return 1 }
        let small = v[0] / best(0), large = v[1] / best(1)
        let lo = log(Double(Self.batches[0])), hi = log(Double(Self.batches[1]))
        let f = min(1, max(0, (log(Double(max(1, batch))) - lo) / (hi - lo)))
        return min(8, max(1, small + f * (large - small)))
    }
}

/// Each calibration measurement's best time over the passes, in measurement order: pass p's i-th measurement is
/// compared with the i-th of the passes before (the sequence is the same every pass).
final class PassMinima {
    private var times: [Double] = []
    private var index = 0

    func rewind() { index = 0 }

    func keep(_ t: Double) -> Double {
        if index == times.count { times.append(t) } else { times[index] = min(times[index], t) }
        index += 1
        return times[index - 1]
    }
}
