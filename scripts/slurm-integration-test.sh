#!/usr/bin/env bash
# End-to-end test of `dgperf slurm` on a real one-node Slurm (scripts/slurm-local.sh):
#   1. a 2-task array job of a tiny sweep, collected by job id → merged cell set == a local unsharded run's;
#   2. a second job with task 1 cancelled (scancel) → collect names task 1, prints the resubmit command, exits 3;
#      running that exact command and collecting again → complete, same cell set, no cell twice;
#   3. bad input (--tasks 0, unknown job id) → one-line errors, exit ≠ 0.
# Slurm is stopped at the end (trap). Skips (exit 0) with one message only when the Slurm services cannot start.
# Env: DGPERF (binary under test; default: swift build's), DGPERF_TASK_BIN (binary the tasks run for
# `sweep` and `merge`; default DGPERF), DGPERF_IT_KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
started_at=$SECONDS
say() { echo "slurm-it: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }

if [ -z "${DGPERF:-}" ]; then
  bin=$(swift build --show-bin-path)
  [ -x "$bin/dgperf" ] || swift build --product dgperf >/dev/null
  DGPERF=$bin/dgperf
fi
DGPERF=$(readlink -f "$DGPERF")
TASK_BIN=$(readlink -f "${DGPERF_TASK_BIN:-$DGPERF}")
# `dgperf X --help` with an unknown X prints the root help and exits 0, so look at the subcommand list.
has_subcommand() { "$1" --help 2>/dev/null | grep -Eq "^[[:space:]]+$2([[:space:]]|$)"; }
has_subcommand "$DGPERF" slurm || fail "$DGPERF has no \`slurm\` subcommand"
for sub in sweep merge; do
  has_subcommand "$TASK_BIN" "$sub" ||
    fail "$TASK_BIN has no \`$sub\` subcommand (the sweep harness is not merged into this build); set DGPERF_TASK_BIN to a dgperf that has sweep and merge"
done

WORK=$(mktemp -d /tmp/dgperf-slurm-it.XXXXXX)
cleanup() {
  local rc=$?
  scripts/slurm-local.sh stop >/dev/null 2>&1 || true
  if [ "${DGPERF_IT_KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

set +e
scripts/slurm-local.sh start
rc=$?
set -e
if [ "$rc" -eq 3 ]; then
  say "SKIP: the local Slurm services cannot start on this machine (reason above); the Slurm integration test did not run"
  exit 0
fi
[ "$rc" -eq 0 ] || fail "scripts/slurm-local.sh start failed ($rc)"

# Tiny sweep: 2 models × 3 batches = 3 shape groups, a few ms of work per cell.
FLAGS=(--models dense,dropout --batch 1,4,16 --hidden 64 --threads 1 --min-reps 3 --max-reps 3 --seed 11)
COLLECT=(--wait --poll 1 --timeout 240)

cell_keys() { python3 -c 'import json,sys; [print(c["key"]) for c in json.load(open(sys.argv[1]))["cells"]]' "$1"; }
check_same_cells() { # merged.json label
  local keys
  keys=$(cell_keys "$1")
  [ -z "$(sort <<<"$keys" | uniq -d)" ] || fail "$2: a cell appears twice in $1: $(sort <<<"$keys" | uniq -d | head -n1)"
  diff <(sort <<<"$keys") <(cell_keys "$WORK/local/results.json" | sort) >&2 || fail "$2: merged cell set differs from the local run's"
  python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["complete"] else 1)' "$1" || fail "$2: merged results are not complete"
  say "$2: $(wc -l <<<"$keys") cells, same set as the local run, none twice"
}

say "local reference run (no sharding)"
"$TASK_BIN" sweep "${FLAGS[@]}" --output "$WORK/local" --quiet

say "bad input"
if "$DGPERF" slurm submit --tasks 0 "${FLAGS[@]}" --output "$WORK/bad" 2>"$WORK/err"; then fail "--tasks 0 was accepted"; fi
grep -q "tasks 0" "$WORK/err" || fail "--tasks 0: unclear error: $(cat "$WORK/err")"
if "$DGPERF" slurm collect 987654 2>"$WORK/err"; then fail "unknown job id was accepted"; fi
grep -q "unknown job id 987654" "$WORK/err" || fail "unknown job id: unclear error: $(cat "$WORK/err")"
[ ! -e "$WORK/bad" ] || fail "--tasks 0 left $WORK/bad behind"

say "job 1: 2 array tasks, collected by job id"
job1=$("$DGPERF" slurm submit --tasks 2 --output "$WORK/job1" --dgperf "$TASK_BIN" "${FLAGS[@]}")
[[ "$job1" =~ ^[0-9]+$ ]] || fail "submit printed '$job1', not a job id"
"$DGPERF" slurm collect "$job1" "${COLLECT[@]}"
check_same_cells "$WORK/job1/results.json" "job 1"
for t in 0 1; do
  python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); assert p["cpusAllowed"], p; print("slurm-it: task %d ran on %s, allowed CPUs %s" % (p["task"], p["host"], p["cpusAllowed"]))' \
    "$WORK/job1/tasks/task-$t.json" >&2 || fail "task $t did not record its allowed cpuset"
done
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert len(r["placements"]) == 2' "$WORK/job1/slurm-job.json" ||
  fail "collect did not record the placements in slurm-job.json"

say "job 2: task 1 cancelled before it runs"
# Held at submission (SBATCH_HOLD, so the hold is not written into the script a resubmission reuses).
job2=$(SBATCH_HOLD=1 "$DGPERF" slurm submit --tasks 2 --output "$WORK/job2" --dgperf "$TASK_BIN" "${FLAGS[@]}")
scancel "${job2}_1"
scontrol release "$job2"
set +e
"$DGPERF" slurm collect "$WORK/job2" "${COLLECT[@]}" 2>"$WORK/collect2.err"
rc=$?
set -e
cat "$WORK/collect2.err" >&2
[ "$rc" -eq 3 ] || fail "collect of a job with a cancelled task exited $rc, expected 3"
grep -Eq "^task 1 \(shard 2/2\): (CANCELLED|missing)" "$WORK/collect2.err" || fail "collect did not name the cancelled task 1"
! grep -q "^task 0 " "$WORK/collect2.err" || ! grep -Eq "^task 0 \(shard" "$WORK/collect2.err" || fail "collect reported the finished task 0 as a problem"
grep -q "sbatch --array=1 " "$WORK/collect2.err" || fail "collect did not print the sbatch resubmit command"
[ ! -e "$WORK/job2/results.json" ] || fail "an incomplete collect wrote results.json"
resubmit=$(grep -m1 -E "slurm submit --output .* --only 1$" "$WORK/collect2.err" | sed -E 's/^[[:space:]]+//')
[ -n "$resubmit" ] || fail "collect did not print a dgperf resubmit command"
say "resubmitting with the printed command: $resubmit"
eval "$resubmit" >/dev/null
"$DGPERF" slurm collect "$WORK/job2" "${COLLECT[@]}"
check_same_cells "$WORK/job2/results.json" "job 2 after resubmit"
# Collecting again is harmless (same merge, nothing added).
"$DGPERF" slurm collect "$WORK/job2" >/dev/null 2>&1 || fail "collecting a complete job again failed"
check_same_cells "$WORK/job2/results.json" "job 2 collected twice"

scripts/slurm-local.sh stop
for d in slurmctld slurmd munged; do
  ! pgrep -x "$d" >/dev/null || fail "$d is still running after stop"
done
say "ok: local Slurm end to end in $((SECONDS - started_at)) s; no Slurm daemon left running"
