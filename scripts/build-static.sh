#!/usr/bin/env bash
# Builds a portable dgperf: Swift standard library and Foundation(Essentials) linked statically, stripped.
# The target host (any x86-64 Linux, e.g. Ubuntu 24.04) needs no Swift toolchain, only:
#   libhwloc15 (apt install libhwloc15) and libstdc++6 (present on every desktop/server install).
# Usage: scripts/build-static.sh [output-path]     (default: .build/static/dgperf, git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.build/static/dgperf}"
limit_mb=60

swift build -c release --static-swift-stdlib --product dgperf
bin="$(swift build -c release --static-swift-stdlib --show-bin-path)/dgperf"
mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
cp "$bin" "$tmp"
strip "$tmp"
mv "$tmp" "$out"

bytes=$(stat -c %s "$out")
mb=$(( (bytes + 1048575) / 1048576 ))
echo "built $out: $bytes bytes (~$mb MiB, stripped)"
echo "dynamic libraries it needs (must exist on the target host):"
ldd "$out" | sed 's/^/  /'
if ldd "$out" | grep -q 'libswift\|libFoundation\|lib_FoundationICU'; then
  echo "error: a Swift runtime library is still linked dynamically; the binary will not run without a toolchain" >&2
  exit 1
fi
if (( bytes >= limit_mb * 1048576 )); then
  echo "error: $out is $mb MiB, over the $limit_mb MiB budget (does a library target import full Foundation? use FoundationEssentials)" >&2
  exit 1
fi
echo "ok: under $limit_mb MiB"
