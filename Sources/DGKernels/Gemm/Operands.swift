/// A logical rows×cols matrix view: element (i, j) is at
/// `base[r(i) * rowStride + c(j) * colStride]`, where r/c are the optional index maps (gathers).
///
/// Index maps are how every sparse path reuses the one GEMM: a shared unit mask is a column map on
/// the weights, a per-sample group is a row map on the activations, a K-side mask is a map on both.
public struct MatrixOperand: @unchecked Sendable {
    public var base: UnsafePointer<Float>
    public var rowStride: Int
    public var colStride: Int
    public var rowIndex: UnsafePointer<Int32>?
    public var colIndex: UnsafePointer<Int32>?

    public init(base: UnsafePointer<Float>, rowStride: Int, colStride: Int,
                rowIndex: UnsafePointer<Int32>? = nil, colIndex: UnsafePointer<Int32>? = nil) {
        self.base = base; self.rowStride = rowStride; self.colStride = colStride
        self.rowIndex = rowIndex; self.colIndex = colIndex
    }

    /// Row-major storage with leading dimension `ld`; `transposed` views it as its transpose.
    public static func rowMajor(_ p: UnsafePointer<Float>, ld: Int, transposed: Bool = false) -> MatrixOperand {
        transposed ? MatrixOperand(base: p, rowStride: 1, colStride: ld)
                   : MatrixOperand(base: p, rowStride: ld, colStride: 1)
    }

    @inline(__always) func physicalRow(_ i: Int) -> Int { rowIndex.map { Int($0[i]) } ?? i }
    @inline(__always) func physicalCol(_ j: Int) -> Int { colIndex.map { Int($0[j]) } ?? j }
    @inline(__always) func element(_ i: Int, _ j: Int) -> Float {
        base[physicalRow(i) * rowStride + physicalCol(j) * colStride]
    }
}

/// Where C goes: element (i, j) is at `base[r(i) * rowStride + c(j)]` (columns are unit-stride).
public struct OutputOperand: @unchecked Sendable {
    public var base: UnsafeMutablePointer<Float>
    public var rowStride: Int
    public var rowIndex: UnsafePointer<Int32>?
    public var colIndex: UnsafePointer<Int32>?

    public init(base: UnsafeMutablePointer<Float>, rowStride: Int,
                rowIndex: UnsafePointer<Int32>? = nil, colIndex: UnsafePointer<Int32>? = nil) {
        self.base = base; self.rowStride = rowStride; self.rowIndex = rowIndex; self.colIndex = colIndex
    }

    @inline(__always) func address(_ i: Int, _ j: Int) -> UnsafeMutablePointer<Float> {
        let r = rowIndex.map { Int($0[i]) } ?? i
        let c = colIndex.map { Int($0[j]) } ?? j
        return base + r * rowStride + c
    }
    var isContiguous: Bool { rowIndex == nil && colIndex == nil }
}

/// What happens to C after the product: `C = A·B + beta·C + bias[j]`, then ReLU if asked.
/// `beta == 0` never reads C (C may hold garbage or NaN).
public struct Epilogue: @unchecked Sendable {
    public var beta: Float
    /// Per logical output column; with `biasIndex`, bias[biasIndex[j]].
    public var bias: UnsafePointer<Float>?
    public var biasIndex: UnsafePointer<Int32>?
    public var relu: Bool

    public init(beta: Float = 0, bias: UnsafePointer<Float>? = nil, biasIndex: UnsafePointer<Int32>? = nil, relu: Bool = false) {
        self.beta = beta; self.bias = bias; self.biasIndex = biasIndex; self.relu = relu
    }
    public static let none = Epilogue()

    @inline(__always) func biasValue(_ j: Int) -> Float {
        guard let b = bias else { return 0 }
        return b[biasIndex.map { Int($0[j]) } ?? j]
    }
}

/// Rejected GEMM calls: each message names the argument and the fix.
public enum GemmError: Error, CustomStringConvertible, Equatable {
    case emptyShape(m: Int, n: Int, k: Int)
    case leadingDimension(name: String, value: Int, minimum: Int)
    case aliasing(String)

    public var description: String {
        switch self {
        case .emptyShape(let m, let n, let k):
            return "GEMM shape m=\(m) n=\(n) k=\(k): every dimension must be ≥ 1"
        case .leadingDimension(let name, let value, let minimum):
            return "\(name)=\(value) is too small: it must be ≥ \(minimum) for this shape"
        case .aliasing(let what):
            return "C overlaps \(what): the output must not alias an input; use a separate output buffer"
        }
    }
}
