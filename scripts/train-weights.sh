#!/usr/bin/env bash
# Trains the small pre-trained set in results/weights/ (Fashion-MNIST, 784→512→10, 10 epochs, Adam, seed 1)
# and evaluates each file. Weights are stored as float16 (~0.8 MB per model) to keep the repository small.
# Usage: scripts/train-weights.sh [OUT_DIR] [extra dgperf train flags, e.g. --data-dir DIR --threads 2]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-results/weights}"; shift || true
swift build -c release --product dgperf >/dev/null
DGPERF=.build/release/dgperf
mkdir -p "$OUT"
train() {  # name, flags…
  local name="$1"; shift
  echo "== $name" >&2
  "$DGPERF" train "$@" --epochs 10 --seed 1 --storage f16 --out "$OUT/$name.dgw" "${EXTRA[@]}" | tee "$OUT/$name.train.log"
}
EXTRA=("$@")
train dense            --model dense
train dropout          --model dropout --dropout 0.2
train dg-lowrank32-l0.05 --model dg --gate lowrank:32 --lambda 0.05
train dg-lowrank32-l0.2  --model dg --gate lowrank:32 --lambda 0.2
train moe-top2         --model moe --experts 8 --top-k 2 --capacity 1.25
for f in "$OUT"/*.dgw; do "$DGPERF" eval "$f" --batch 128 --threads 1 | tee "${f%.dgw}.eval.log"; done
du -ch "$OUT"/*.dgw | tail -1
