#!/usr/bin/env python3
"""Turns `dgperf kernel` output into the README's "Sparse paths" table.

    .build/release/dgperf kernel --reps 15 --prepacked > run1.txt   # (and run2.txt, ... for ranges)
    scripts/kernel-table.py run1.txt              # one run: "speedup× (%ideal)" per cell
    scripts/kernel-table.py run1.txt run2.txt ... # several: "%ideal min–max over the runs" per cell
    scripts/kernel-table.py --median run*.txt     # several: the median run's "speedup× (%ideal)" per cell

Rows: (mask, G, H, B, output layout); columns: r ≈ 0.5, 0.25, 0.1 (block masks round to whole blocks, so the
table's r is the nominal one). The r = 1 cells and the dense / MoE rows are left out (MoE has its own lines).
"""
import statistics
import sys

NOMINAL = {"0.5": 0.5, "0.25": 0.25, "0.1": 0.1}


def nominal(r):
    """The grid's r a measured r (e.g. 0.094 for a block mask at 0.1) belongs to, or None for r = 1."""
    v = float(r)
    if v > 0.75:
        return None
    return min(NOMINAL, key=lambda k: abs(NOMINAL[k] - v))


def parse(path):
    cells, order = {}, []
    for line in open(path, encoding="utf-8"):
        t = line.split()
        if len(t) < 16 or not t[0].isdigit() or t[3] in ("dense", "dense-eq", "moe"):
            continue
        _, h, b, mask, g, r, layout, strategy = t[:8]
        col = nominal(r)
        if col is None:
            continue
        kind = "block" if mask == "shared" and g != "1" else mask
        output = "scattered" if mask == "per-sample" else layout
        row = (kind, g, h, b, output)
        if row not in order:
            order.append(row)
        cells[(row, col)] = (float(t[11]), int(t[14].rstrip("%")), strategy)
    return cells, order


def main(paths, median=False):
    runs = [parse(p) for p in paths]
    order = runs[0][1]
    print("| mask | G | H | B | output | strategy (auto) | r≈0.5 | r≈0.25 | r≈0.1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in order:
        strategies, values = [], []
        for col in NOMINAL:
            found = [cells[(row, col)] for cells, _ in runs if (row, col) in cells]
            if not found:
                values.append("-")
                continue
            for s in (f[2] for f in found):
                if s not in strategies:
                    strategies.append(s)
            if len(runs) == 1 or median:
                speedup = statistics.median_low(f[0] for f in found)
                pct = next(f[1] for f in found if f[0] == speedup)
                values.append(f"{speedup:.2f}× ({pct}%)")
            else:
                lo, hi = min(f[1] for f in found), max(f[1] for f in found)
                values.append(f"{lo}%" if lo == hi else f"{lo}–{hi}%")
        kind, g, h, b, output = row
        print(f"| {kind} | {g} | {h} | {b} | {output} | {'/'.join(strategies)} | " + " | ".join(values) + " |")


if __name__ == "__main__":
    args = sys.argv[1:]
    median = "--median" in args
    files = [a for a in args if a != "--median"]
    if not files:
        sys.exit("usage: scripts/kernel-table.py [--median] RUN.txt [RUN2.txt ...]  (output of `dgperf kernel`)")
    for f in files:
        try:
            open(f, encoding="utf-8").close()
        except OSError as e:
            sys.exit(f"kernel-table: cannot read {f}: {e.strerror}; pass files written by `dgperf kernel > FILE`")
    main(files, median)
