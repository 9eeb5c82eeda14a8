#!/usr/bin/env bash
# Verifies that every micro-kernel was compiled to real fused multiply-adds on the intended registers:
# the AVX-512 kernels must use vfmadd…ps on %zmm, the AVX2 ones on %ymm, and none may call fmaf.
# A baseline x86-64 build of SIMD `addingProduct` becomes one libm call per lane (~1 GFLOP/s).
# Usage: scripts/check-fma.sh [debug|release]   (builds that configuration first)
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-debug}
swift build -c "$config" --product dgperf >/dev/null
bin=".build/$config/dgperf"
fail=0
# Swift mangles with substitutions, so find each kernel's symbol through the demangler.
symbols=$(mktemp); trap 'rm -f "$symbols"' EXIT
nm --defined-only "$bin" | awk '$2 ~ /[Tt]/ {print $3}' | grep -E 'DGKernelsAVX' > "$symbols.m" || true
swift demangle --simplified < "$symbols.m" | paste -d' ' "$symbols.m" - > "$symbols"; rm -f "$symbols.m"
check() {  # symbol-substring register
  local sym=$1 reg=$2
  local mangled body
  mangled=$(grep -m1 -F " $sym(" "$symbols" | awk '{print $1}')
  body=""
  [ -n "$mangled" ] && body=$(objdump -d --no-show-raw-insn --disassemble="$mangled" "$bin")
  if [ -z "$body" ]; then echo "FAIL $sym: symbol not found in $bin"; fail=1; return; fi
  local fma calls
  fma=$(grep -cE "vfmadd[0-9]+ps .*%$reg" <<<"$body" || true)
  calls=$(grep -cE "call.*fmaf" <<<"$body" || true)
  if [ "$fma" -gt 0 ] && [ "$calls" -eq 0 ]; then
    echo "ok   $sym: $fma vfmadd…ps on %$reg, no fmaf calls"
  else
    echo "FAIL $sym: $fma vfmadd…ps on %$reg, $calls fmaf calls"; fail=1
  fi
}
check sgemmMicroKernelAVX512_6x32 zmm
check sgemvRowsAVX512 zmm
check sgemvIndexedAVX512 zmm
check fmaPeakLoopAVX512 zmm
check sgemmMicroKernelAVX2_6x16 ymm
check sgemvRowsAVX2 ymm
check sgemvIndexedAVX2 ymm
check fmaPeakLoopAVX2 ymm
exit $fail
