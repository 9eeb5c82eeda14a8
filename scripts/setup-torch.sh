#!/usr/bin/env bash
# Opt-in: a virtual environment for the PyTorch peer (`dgperf --sweep --peers numpy,torch`).
# Creates .venv-peers/ (with the system site-packages, so numpy stays the one dgperf already uses) and installs
# the CPU-only wheel torch==2.13.0+cpu (~200 MB): first from the configured package sources (a local
# find-links folder or PyPI — PyPI has no "+cpu" build, so nothing CUDA is pulled), then from PyTorch's CPU index.
# dgperf picks .venv-peers/bin/python3 automatically when it exists (override with DGPERF_PYTHON).
# Never run by CI. Remove with: rm -rf .venv-peers
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-peers
TORCH="torch==2.13.0+cpu"
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || { echo "setup-torch: $PY not found; install Python 3 first" >&2; exit 1; }
[ -x "$VENV/bin/python3" ] || "$PY" -m venv --system-site-packages "$VENV"
PIP=("$VENV/bin/python3" -m pip install --disable-pip-version-check)
if "${PIP[@]}" "$TORCH"; then :
elif "${PIP[@]}" --timeout 30 --index-url https://download.pytorch.org/whl/cpu \
       --extra-index-url https://pypi.org/simple "$TORCH"; then :
else
  echo "setup-torch: could not install $TORCH (neither the configured sources nor https://download.pytorch.org/whl/cpu were reachable); the torch peer stays off" >&2
  exit 1
fi
"$VENV/bin/python3" - <<'PY'
import torch
print("torch", torch.__version__, "threads", torch.get_num_threads())
import re
m = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
print("BLAS:", m.group(1) if m else "unknown")
PY
echo "ready: dgperf --sweep --peers numpy,torch uses $VENV/bin/python3" >&2
