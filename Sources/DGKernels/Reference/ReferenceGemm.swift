/// Obviously-correct twins of the fast kernels, accumulating in Float64. Tests compare against these.
public enum Reference {
    /// C = A·B (+ beta·C)(+ bias)(ReLU) through operand views, in Float64, rounded once to Float.
    public static func gemm(m: Int, n: Int, k: Int, a: MatrixOperand, b: MatrixOperand, c: OutputOperand,
                            epilogue: Epilogue = .none) {
        for i in 0..<m {
            for j in 0..<n {
                var acc = 0.0
                for p in 0..<k { acc += Double(a.element(i, p)) * Double(b.element(p, j)) }
                let dst = c.address(i, j)
                acc += Double(epilogue.biasValue(j))
                if epilogue.beta != 0 { acc += Double(epilogue.beta) * Double(dst.pointee) }
                if epilogue.relu && acc < 0 { acc = 0 }
                dst.pointee = Float(acc)
            }
        }
    }

    /// Row-major convenience with the same conventions as `GemmEngine.sgemm`, returning Float64 results.
    public static func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                             a: [Float], lda: Int, b: [Float], ldb: Int) -> [Double] {
        var out = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var acc = 0.0
                for p in 0..<k {
                    let av = transA ? a[p * lda + i] : a[i * lda + p]
                    let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                    acc += Double(av) * Double(bv)
                }
                out[i * n + j] = acc
            }
        }
        return out
    }
}
