#!/usr/bin/env bash
# package-benchmark static thresholds for the kernel benchmarks (Benchmarks/), per machine:
#   scripts/bench-check.sh FINGERPRINT            check this run against Benchmarks/Thresholds/FINGERPRINT
#   scripts/bench-check.sh FINGERPRINT --update   (re)write those thresholds from a run on this machine
# FINGERPRINT is dgperf's machine fingerprint (results.json → environment.fingerprint). Absolute times only
# compare on the same machine kind, so an unknown machine skips the check (and says so). A regression must
# survive one re-run. Exit: 0 ok/skipped, 1 regression confirmed, other = tool failure.
set -euo pipefail
cd "$(dirname "$0")/../Benchmarks"
fp=${1:?usage: scripts/bench-check.sh FINGERPRINT [--update]}
dir="$PWD/Thresholds/$fp"
if [ "${2:-}" = "--update" ]; then
  swift package --allow-writing-to-package-directory benchmark thresholds update --path "$dir" --no-progress
  exit 0
fi
if [ ! -d "$dir" ]; then
  echo "bench-check: no package-benchmark thresholds for machine $fp (Benchmarks/Thresholds/$fp); skipping — record them with: scripts/bench-check.sh $fp --update"
  exit 0
fi
check() {
  set +e
  swift package benchmark thresholds check --path "$dir" --no-progress 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]|Warning|Note: skipping|legacy|^\s*$' | tail -n 40
  local rc=${PIPESTATUS[0]}
  set -e
  return "$rc"
}
rc=0; check || rc=$?
# package-benchmark: 0 equal, 4 only improvements, 2 regressions.
if [ "$rc" -eq 0 ] || [ "$rc" -eq 4 ]; then echo "bench-check: within thresholds"; exit 0; fi
if [ "$rc" -ne 2 ]; then echo "bench-check: benchmark tool failed ($rc)"; exit "$rc"; fi
echo "bench-check: regression reported; re-running once"
rc=0; check || rc=$?
if [ "$rc" -eq 0 ] || [ "$rc" -eq 4 ]; then echo "bench-check: not reproduced on re-run (noise); ok"; exit 0; fi
echo "bench-check: regression confirmed"
exit 1
