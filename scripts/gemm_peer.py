#!/usr/bin/env python3
"""numpy float32 matmul peer for `dgperf gemm --peer numpy`.

Times C = A @ W.T (the MLP layer form, as dgperf's default) or A @ B for the given shapes with the
same policy as dgperf (warm-up >= 50 ms, each sample >= 1 ms of calls) and prints one JSON object per
shape on stdout: {"m","k","n","seconds":[...],"blas","corename","threads"}.

Run it through dgperf, which sets OPENBLAS_NUM_THREADS and unsets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE
(or forces OPENBLAS_CORETYPE=Haswell for the AVX2 comparison) for this command only.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
from blas_info import numpy_blas, openblas_corename  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", required=True, help="m,k,n;m,k,n;...")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--no-trans-b", action="store_true")
    args = ap.parse_args()
    try:
        import numpy as np
    except ImportError:
        print(json.dumps({"error": "numpy is not installed (pip install numpy)"}))
        return 3
    blas = numpy_blas(np)
    core = openblas_corename(np)
    rng = np.random.default_rng(42)
    for spec in args.shapes.split(";"):
        m, k, n = (int(x) for x in spec.split(","))
        a = (rng.random((m, k), dtype=np.float32) - 0.5)
        w = (rng.random((n, k), dtype=np.float32) - 0.5)
        b = w.T if not args.no_trans_b else np.ascontiguousarray(w.T)
        out = np.empty((m, n), dtype=np.float32)

        def once():
            np.matmul(a, b, out=out)

        t0 = time.perf_counter()
        w_calls = 0
        while w_calls < 3 or time.perf_counter() - t0 < 0.05:
            once()
            w_calls += 1
        t = time.perf_counter(); once(); single = time.perf_counter() - t
        inner = max(1, int(1e-3 / max(single, 1e-9)))
        secs = []
        for _ in range(args.reps):
            t = time.perf_counter()
            for _ in range(inner):
                once()
            secs.append((time.perf_counter() - t) / inner)
        print(json.dumps({"m": m, "k": k, "n": n, "seconds": secs, "blas": blas, "corename": core,
                          "threads": os.environ.get("OPENBLAS_NUM_THREADS", "default")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
