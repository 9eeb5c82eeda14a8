#!/usr/bin/env python3
"""Peer worker for `dgperf --sweep --peers numpy[,torch]`: runs a sweep cell's model in numpy / PyTorch.

dgperf starts one worker per thread count (python3 peer_worker.py --threads N) with OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS and MKL_NUM_THREADS set to N and OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset, and talks to it
with one JSON object per line on stdin/stdout (stderr goes to a log file):

  {"op": "hello"}                         -> versions, BLAS, OpenBLAS core, torch's BLAS; which impls work
  {"op": "load", "dir": D}                -> reads D/cell.json and the .npy files dgperf wrote (same weights,
                                             masks and input variants as dgperf's cell); {"strategies": {...}}
  {"op": "check", "impl": I, "out": P}    -> one forward on input variant 0, output written to P as raw
                                             little-endian float32 (dgperf compares it with its own output)
  {"op": "warmup", "impl": I, "calls": n, "seconds": s}  -> {"calls": n', "single": seconds of one call}
  {"op": "sample", "impl": I, "inner": n, "flushBytes": b} -> {"seconds": time of n back-to-back calls}
  {"op": "quit"}

dgperf owns the repetition policy (warm-up, reps until the CI target or budget, min/max reps) and the
statistics: this worker only executes and times what it is asked, so both sides follow the same rules.
Every reply carries "ok"; failures carry "error" (one line) instead of killing the worker.

What each impl runs per cell (inputs rotate over the variants as dgperf's do; the masks are the gate bits
dgperf used on variant 0 and are turned into unit indices / unit masks inside the timed call):
  dense / dropout: x @ W.T + b, ReLU per hidden layer, then the output layer (torch: F.linear).
  dg / random, shared masks (and per-sample masks at batch 1): gathered weights W[idx] (torch: index_select),
      the next layer gathers the matching input columns; dg also runs its gate predictor (result unused,
      exactly as dgperf's synthetic-mask models do); random scales live units by 1/r.
  dg / random, per-sample masks: dense-then-mask (the whole product, then multiply by the 0/1 unit mask).
  moe: Switch/GShard top-k reference: router, softmax, top-k, capacity (rank-major, token order), per-expert
      gathered rows through the expert MLP, weighted combine (torch: topk, index_select, index_add_).
"""
import argparse
import json
import math
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blas_info import numpy_blas, openblas_corename, torch_blas  # noqa: E402


class CellData:
    """A cell as dgperf wrote it: header (cell.json) plus named float32 tensors, inputs and gate bits."""

    def __init__(self, np, directory):
        with open(os.path.join(directory, "cell.json")) as f:
            h = json.load(f)
        self.header = h
        self.kind = h["kind"]
        self.batch = int(h["batch"])
        self.hidden = [int(x) for x in h["hidden"]]
        self.classes = int(h["classes"])
        self.granularity = int(h.get("granularity", 1))
        self.mask_kind = h.get("maskKind", "per-sample")
        self.gate = h.get("gatePredictor", "none")
        self.scale = float(h.get("scale", 1.0))
        self.top_k = int(h.get("topK", 1))
        self.experts = int(h.get("experts", 1))
        self.capacity_factor = float(h.get("capacityFactor", 1.0))
        self.tensors = {name: np.load(os.path.join(directory, f)) for name, f in h["tensors"].items()}
        self.inputs = np.load(os.path.join(directory, h["inputs"]))  # variants x batch x features
        self.masks = [np.load(os.path.join(directory, f)) for f in h.get("masks", [])]  # batch x gates (uint8)
        if self.inputs.ndim != 3 or self.inputs.shape[1] != self.batch:
            raise ValueError("inputs have shape %s, expected (variants, %d, features)" % (self.inputs.shape, self.batch))

    @property
    def gathered(self):
        """Shared masks — and per-sample masks at batch 1, which are one shared mask — use gathered weights."""
        return self.mask_kind == "shared" or self.batch == 1

    def strategy(self):
        if self.kind in ("dense", "dropout"):
            return "dense"
        if self.kind == "moe":
            return "switch-top%d" % self.top_k
        s = "gather" if self.gathered else "dense-then-mask"
        return s + ("+gate-predictor" if self.kind == "dg" and self.gate not in ("none", "static") else "")


def numpy_forward(np, c):
    """A function (variant -> output array) running cell `c` with numpy."""
    T = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in c.tensors.items()}
    L = len(c.hidden)
    gr = c.granularity

    def linear(x, w, b, relu):
        h = x @ w.T
        h += b
        if relu:
            np.maximum(h, 0, out=h)
        return h

    def unit_indices(bits_row, units):
        return np.flatnonzero(np.repeat(bits_row, gr)[:units])

    def gate_predictor(l, x, kidx):
        if c.kind != "dg" or c.gate in ("none", "static"):
            return None
        if c.gate == "full":
            w = T["gate.%d.weight" % l]
            return linear(x, w if kidx is None else w[:, kidx], T["gate.%d.bias" % l], False)
        down = T["gate.%d.down" % l]
        t = x @ (down if kidx is None else down[:, kidx]).T
        return linear(t, T["gate.%d.up" % l], T["gate.%d.bias" % l], False)

    if c.kind in ("dense", "dropout"):
        def dense(v):
            x = c.inputs[v]
            for l in range(L):
                x = linear(x, T["hidden.%d.weight" % l], T["hidden.%d.bias" % l], True)
            return linear(x, T["output.weight"], T["output.bias"], False)
        return dense

    if c.kind in ("dg", "random"):
        if c.gathered:
            bits0 = [m[0] for m in c.masks]

            def gathered(v):
                x = c.inputs[v]
                prev = None
                for l in range(L):
                    gate_predictor(l, x, prev)
                    idx = unit_indices(bits0[l], c.hidden[l])
                    w = T["hidden.%d.weight" % l]
                    w = w[idx] if prev is None else w[np.ix_(idx, prev)]
                    x = linear(x, w, T["hidden.%d.bias" % l][idx], True)
                    if c.scale != 1.0:
                        x *= np.float32(c.scale)
                    prev = idx
                return linear(x, T["output.weight"][:, prev], T["output.bias"], False)
            return gathered

        def masked(v):
            x = c.inputs[v]
            for l in range(L):
                gate_predictor(l, x, None)
                m = np.repeat(c.masks[l], gr, axis=1)[:, :c.hidden[l]].astype(np.float32)
                if c.scale != 1.0:
                    m *= np.float32(c.scale)
                x = linear(x, T["hidden.%d.weight" % l], T["hidden.%d.bias" % l], True)
                x *= m
            return linear(x, T["output.weight"], T["output.bias"], False)
        return masked

    if c.kind == "moe":
        E, K, B = c.experts, c.top_k, c.batch
        capacity = max(1, int(math.ceil(c.capacity_factor * float(B * K) / float(E))))
        rows_all = np.arange(B)

        def moe(v):
            x = c.inputs[v]
            p = linear(x, T["router.weight"], T["router.bias"], False)
            p -= p.max(axis=1, keepdims=True)
            np.exp(p, out=p)
            p /= p.sum(axis=1, keepdims=True)
            choice = [np.argmax(p, axis=1)]
            if K == 2:
                q = p.copy()
                q[rows_all, choice[0]] = -np.inf
                choice.append(np.argmax(q, axis=1))
                norm = p[rows_all, choice[0]] + p[rows_all, choice[1]]
            out = np.zeros((B, c.classes), dtype=np.float32)
            rows = [[] for _ in range(E)]
            count = [0] * E
            for rank in range(K):  # rank-major: all first choices are placed before any second choice
                ch = choice[rank]
                for e in range(E):
                    tok = np.flatnonzero(ch == e)[:capacity - count[e]]
                    if tok.size:
                        rows[e].append(tok)
                        count[e] += tok.size
            for e in range(E):
                if not rows[e]:
                    continue
                tok = np.concatenate(rows[e])
                g = p[tok, e] if K == 1 else p[tok, e] / norm[tok]
                h = linear(x[tok], T["expert.%d.w1" % e], T["expert.%d.b1" % e], True)
                ye = linear(h, T["expert.%d.w2" % e], T["expert.%d.b2" % e], False)
                out[tok] += g[:, None] * ye
            return out
        return moe

    raise ValueError("model kind '%s' has no numpy peer" % c.kind)


def torch_forward(torch, np, c):
    """A function (variant -> output array) running cell `c` with PyTorch CPU (inference mode)."""
    F = torch.nn.functional
    T = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in c.tensors.items()}
    X = torch.from_numpy(np.ascontiguousarray(c.inputs, dtype=np.float32))
    M = [torch.from_numpy(np.ascontiguousarray(m, dtype=np.uint8)) for m in c.masks]
    L = len(c.hidden)
    gr = c.granularity

    def gate_predictor(l, x, kidx):
        if c.kind != "dg" or c.gate in ("none", "static"):
            return None
        if c.gate == "full":
            w = T["gate.%d.weight" % l]
            return F.linear(x, w if kidx is None else w.index_select(1, kidx), T["gate.%d.bias" % l])
        down = T["gate.%d.down" % l]
        t = F.linear(x, down if kidx is None else down.index_select(1, kidx))
        return F.linear(t, T["gate.%d.up" % l], T["gate.%d.bias" % l])

    if c.kind in ("dense", "dropout"):
        def dense(v):
            x = X[v]
            for l in range(L):
                x = F.linear(x, T["hidden.%d.weight" % l], T["hidden.%d.bias" % l]).relu_()
            return F.linear(x, T["output.weight"], T["output.bias"])
        fn = dense
    elif c.kind in ("dg", "random"):
        if c.gathered:
            def gathered(v):
                x = X[v]
                prev = None
                for l in range(L):
                    gate_predictor(l, x, prev)
                    idx = torch.nonzero(M[l][0].repeat_interleave(gr)[:c.hidden[l]]).squeeze(1)
                    w = T["hidden.%d.weight" % l].index_select(0, idx)
                    if prev is not None:
                        w = w.index_select(1, prev)
                    x = F.linear(x, w, T["hidden.%d.bias" % l].index_select(0, idx)).relu_()
                    if c.scale != 1.0:
                        x.mul_(c.scale)
                    prev = idx
                return F.linear(x, T["output.weight"].index_select(1, prev), T["output.bias"])
            fn = gathered
        else:
            def masked(v):
                x = X[v]
                for l in range(L):
                    gate_predictor(l, x, None)
                    m = M[l].repeat_interleave(gr, dim=1)[:, :c.hidden[l]].to(torch.float32)
                    if c.scale != 1.0:
                        m.mul_(c.scale)
                    x = F.linear(x, T["hidden.%d.weight" % l], T["hidden.%d.bias" % l]).relu_().mul_(m)
                return F.linear(x, T["output.weight"], T["output.bias"])
            fn = masked
    elif c.kind == "moe":
        E, K, B = c.experts, c.top_k, c.batch
        capacity = max(1, int(math.ceil(c.capacity_factor * float(B * K) / float(E))))

        def moe(v):
            x = X[v]
            p = torch.softmax(F.linear(x, T["router.weight"], T["router.bias"]), dim=1)
            top_p, top_e = torch.topk(p, K, dim=1)
            if K == 2:
                top_p = top_p / top_p.sum(dim=1, keepdim=True)
            out = torch.zeros(B, c.classes)
            picks = [[] for _ in range(E)]
            count = [0] * E
            for rank in range(K):  # rank-major capacity, token order
                ch = top_e[:, rank]
                for e in range(E):
                    tok = torch.nonzero(ch == e).squeeze(1)[:capacity - count[e]]
                    if tok.numel():
                        picks[e].append((tok, top_p[tok, rank]))
                        count[e] += tok.numel()
            for e in range(E):
                if not picks[e]:
                    continue
                tok = torch.cat([t for t, _ in picks[e]])
                g = torch.cat([w for _, w in picks[e]])
                h = F.linear(x.index_select(0, tok), T["expert.%d.w1" % e], T["expert.%d.b1" % e]).relu_()
                ye = F.linear(h, T["expert.%d.w2" % e], T["expert.%d.b2" % e])
                out.index_add_(0, tok, ye * g.unsqueeze(1))
            return out
        fn = moe
    else:
        raise ValueError("model kind '%s' has no torch peer" % c.kind)

    def run(v):
        with torch.inference_mode():
            return fn(v)
    return lambda v: run(v).numpy()


class Worker:
    def __init__(self, threads):
        self.threads = threads
        self.np = None
        self.torch = None
        self.errors = {}
        try:
            import numpy
            self.np = numpy
        except Exception as e:  # ImportError, or a broken install
            self.errors["numpy"] = "numpy is not importable (%s); install it with: python3 -m pip install numpy" % e
        if self.np is not None:
            try:
                import torch
                torch.set_num_threads(threads)
                self.torch = torch
            except Exception as e:
                self.errors["torch"] = "torch is not importable (%s); run scripts/setup-torch.sh" % type(e).__name__
        else:
            self.errors["torch"] = "torch peer needs numpy"
        self.cell = None
        self.fns = {}
        self.flush = None

    def hello(self, _):
        info = {"python": sys.version.split()[0], "threads": self.threads, "errors": self.errors, "impls": []}
        if hasattr(os, "sched_getaffinity"):
            info["cpus"] = sorted(os.sched_getaffinity(0))
        if self.np is not None:
            info["impls"].append("numpy")
            info["numpy"] = {"version": self.np.__version__, "blas": numpy_blas(self.np),
                             "openblasCore": openblas_corename(self.np)}
        if self.torch is not None:
            info["impls"].append("torch")
            t = torch_blas(self.torch)
            t.update({"version": self.torch.__version__, "threads": self.torch.get_num_threads()})
            info["torch"] = t
        return info

    def load(self, req):
        self.cell = CellData(self.np, req["dir"])
        self.fns = {}
        strategies = {}
        if self.np is not None:
            self.fns["numpy"] = numpy_forward(self.np, self.cell)
            strategies["numpy"] = self.cell.strategy()
        if self.torch is not None:
            self.fns["torch"] = torch_forward(self.torch, self.np, self.cell)
            strategies["torch"] = self.cell.strategy()
        return {"strategies": strategies}

    def fn(self, req):
        impl = req.get("impl")
        if impl not in self.fns:
            raise ValueError("impl '%s' is not loaded (loaded: %s)" % (impl, ", ".join(sorted(self.fns)) or "none"))
        return self.fns[impl]

    def check(self, req):
        out = self.np.ascontiguousarray(self.fn(req)(0), dtype="<f4")
        expected = (self.cell.batch, self.cell.classes)
        if out.shape != expected:
            raise ValueError("output shape %s, expected %s" % (out.shape, expected))
        out.tofile(req["out"])
        return {"shape": list(out.shape)}

    def warmup(self, req):
        f = self.fn(req)
        variants = self.cell.inputs.shape[0]
        t0 = time.perf_counter()
        n = 0
        while n < int(req.get("calls", 3)) or time.perf_counter() - t0 < float(req.get("seconds", 0.05)):
            f(n % variants)
            n += 1
        t = time.perf_counter()
        f(n % variants)
        return {"calls": n, "single": time.perf_counter() - t}

    def sample(self, req):
        f = self.fn(req)
        variants = self.cell.inputs.shape[0]
        flush = int(req.get("flushBytes", 0))
        if flush > 0:
            if self.flush is None or self.flush.size < flush:
                self.flush = self.np.zeros(flush, dtype=self.np.uint8)
            self.flush += 1
        inner = max(1, int(req.get("inner", 1)))
        t = time.perf_counter()
        for i in range(inner):
            f(i % variants)
        return {"seconds": time.perf_counter() - t}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep-affinity", action="store_true", help="keep the CPU mask inherited from dgperf")
    args = ap.parse_args()
    # Ctrl-C reaches the whole process group: dgperf handles it and closes our stdin, which ends this loop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # dgperf's calling thread is pinned to one core by its worker pool and a spawned child inherits that
    # mask; widen it to every CPU this process may use *before* numpy/torch create their threads.
    if not args.keep_affinity and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
        except OSError:
            pass
    w = Worker(max(1, args.threads))
    ops = {"hello": w.hello, "load": w.load, "check": w.check, "warmup": w.warmup, "sample": w.sample}
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "quit":
                break
            if op not in ops:
                raise ValueError("unknown op '%s'" % op)
            if op != "hello" and w.np is None:
                raise RuntimeError(w.errors["numpy"])
            reply = ops[op](req)
            reply["ok"] = True
        except Exception as e:  # one line back to dgperf; the worker keeps serving
            reply = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
