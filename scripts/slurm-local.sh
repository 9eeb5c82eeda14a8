#!/usr/bin/env bash
# A one-node Slurm on this machine, for dgperf's integration test and for trying `dgperf slurm` locally.
#   scripts/slurm-local.sh start    install slurm-wlm + munge if missing (apt-get, root), write the config,
#                                   start munged, slurmctld, slurmd; wait until `sinfo` shows the node idle
#   scripts/slurm-local.sh stop     kill the daemons started here (pid files) and wait until they are gone
#   scripts/slurm-local.sh status   daemons, `sinfo`, `squeue`
# Idempotent: start on a running cluster only checks it; stop on a stopped one does nothing.
# No cgroups (containers): ProctrackType=proctrack/linuxproc, TaskPlugin=task/none, no accounting database
# (so `sacct` is unavailable and dgperf falls back to squeue/scontrol and the shards' own files).
# Exit codes: 0 ok; 1 error; 3 `start` could not bring the services up (callers may skip on 3).
set -euo pipefail

STATE=${DGPERF_SLURM_STATE:-/tmp/dgperf-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by dgperf scripts/slurm-local.sh"
NODE=$(hostname -s)
PARTITION=debug

log() { echo "slurm-local: $*" >&2; }
die() { log "error: $*"; exit "${2:-1}"; }

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_from() { [ -f "$1" ] && tr -dc '0-9' <"$1" || true; }

install_packages() {
  local need=()
  command -v slurmctld >/dev/null || need+=(slurmctld)
  command -v slurmd >/dev/null || need+=(slurmd)
  command -v sbatch >/dev/null || need+=(slurm-client)
  command -v munged >/dev/null || need+=(munge)
  ((${#need[@]})) || return 0
  [ "$(id -u)" -eq 0 ] || die "Slurm is not installed and installing it needs root: run as root, or apt-get install slurm-wlm munge" 3
  command -v apt-get >/dev/null || die "Slurm is not installed and apt-get is missing (not Debian/Ubuntu); install slurmctld, slurmd, munge yourself" 3
  log "installing ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts must not try to start services (no init system in a container); we start them below.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; made_policy=1; fi
  local ok=0
  if apt-get install -y -qq --no-install-recommends "${need[@]}" >"$STATE/apt.log" 2>&1; then ok=1
  else
    log "apt-get install failed; running apt-get update first"
    apt-get update -qq >>"$STATE/apt.log" 2>&1 || true
    apt-get install -y -qq --no-install-recommends "${need[@]}" >>"$STATE/apt.log" 2>&1 && ok=1
  fi
  [ "$made_policy" -eq 1 ] && rm -f "$policy"
  [ "$ok" -eq 1 ] || { tail -n 5 "$STATE/apt.log" >&2; die "could not install ${need[*]} (log: $STATE/apt.log)" 3; }
}

write_config() {
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script (a real cluster?); refusing to overwrite it" 3
  fi
  local cpus mem_mb
  cpus=$(nproc --all)
  # A bit under what is free now, so slurmd never marks the node down for "low RealMemory".
  mem_mb=$(awk '/MemAvailable/ {printf "%d", $2/1024*0.8}' /proc/meminfo)
  [ "${mem_mb:-0}" -ge 256 ] || mem_mb=256
  mkdir -p /etc/slurm "$STATE/state" "$STATE/spool" "$STATE/logs"
  local tmp="$CONF.tmp.$$"
  cat >"$tmp" <<EOF
$MARK — one node, no cgroups, no accounting database. Safe to delete.
ClusterName=dgperf-local
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/logs/slurmctld.log
SlurmdLogFile=$STATE/logs/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=600
KillWait=5
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$NODE CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$tmp" "$CONF"
  log "wrote $CONF (node $NODE, $cpus CPUs, ${mem_mb} MB)"
}

start_munge() {
  local pid
  pid=$(pid_from /run/munge/munged.pid)
  if pid_alive "$pid" && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
  id munge >/dev/null 2>&1 || die "user 'munge' is missing (broken munge package?)" 3
  mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    log "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key --force
    else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
  fi
  chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
  chmod 0700 /etc/munge /var/lib/munge /var/log/munge; chmod 0755 /run/munge; chmod 0400 /etc/munge/munge.key
  rm -f /run/munge/munged.pid
  if [ "$(id -u)" -eq 0 ]; then runuser -u munge -- munged >"$STATE/logs/munged.out" 2>&1 || true
  else munged >"$STATE/logs/munged.out" 2>&1 || true; fi
  for _ in $(seq 1 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$STATE/logs/munged.out" >&2 || true
  die "munged did not start (log above)" 3
}

node_state() { sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -n1 | tr -d '*~#!%$@^-' || true; }

start() {
  mkdir -p "$STATE/logs"
  install_packages
  # A running cluster keeps its config (rewriting it under live daemons would desynchronise them).
  if pid_alive "$(pid_from "$STATE/slurmctld.pid")" && pid_alive "$(pid_from "$STATE/slurmd.pid")"; then
    log "already running"
  else
    write_config
  fi
  start_munge
  local pid
  pid=$(pid_from "$STATE/slurmctld.pid")
  if ! pid_alive "$pid"; then
    slurmctld -f "$CONF" >"$STATE/logs/slurmctld.out" 2>&1 || { tail -n 20 "$STATE/logs/slurmctld.log" "$STATE/logs/slurmctld.out" >&2 2>/dev/null; die "slurmctld did not start" 3; }
  fi
  pid=$(pid_from "$STATE/slurmd.pid")
  if ! pid_alive "$pid"; then
    slurmd -f "$CONF" >"$STATE/logs/slurmd.out" 2>&1 || { tail -n 20 "$STATE/logs/slurmd.log" "$STATE/logs/slurmd.out" >&2 2>/dev/null; die "slurmd did not start" 3; }
  fi
  local state=""
  for i in $(seq 1 120); do
    state=$(node_state)
    case "$state" in
      idle|mixed|allocated) log "node $NODE is $state (partition $PARTITION)"; return 0 ;;
      down|drained|draining|fail|unknown|"")
        # A node left DOWN by an earlier run (e.g. a changed config) is brought back once.
        if [ "$i" -eq 20 ] && [ -n "$state" ]; then scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true; fi ;;
    esac
    sleep 0.5
  done
  tail -n 20 "$STATE/logs/slurmctld.log" "$STATE/logs/slurmd.log" >&2 2>/dev/null || true
  die "node $NODE did not become idle within 60 s (state '${state:-none}'; logs above)" 3
}

stop_pidfile() { # name pidfile
  local pid
  pid=$(pid_from "$2")
  pid_alive "$pid" || { rm -f "$2"; return 0; }
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do pid_alive "$pid" || { rm -f "$2"; log "stopped $1 ($pid)"; return 0; }; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  sleep 0.2
  pid_alive "$pid" && die "$1 ($pid) survives SIGKILL"
  rm -f "$2"; log "killed $1 ($pid)"
}

stop() {
  # Jobs first, so no slurmstepd outlives slurmd.
  if command -v scancel >/dev/null && [ -f "$STATE/slurmctld.pid" ] && pid_alive "$(pid_from "$STATE/slurmctld.pid")"; then
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    sleep 1
  fi
  stop_pidfile slurmd "$STATE/slurmd.pid"
  stop_pidfile slurmctld "$STATE/slurmctld.pid"
  stop_pidfile munged /run/munge/munged.pid
  # slurmstepd exits with its job; say so if one outlived slurmd (we never kill by name).
  for _ in $(seq 1 50); do pgrep -x slurmstepd >/dev/null || return 0; sleep 0.1; done
  log "warning: a slurmstepd is still running (pids $(pgrep -x slurmstepd | tr '\n' ' '))"
  return 0
}

status() {
  local name pidfile pid any=0
  for pair in "munged:/run/munge/munged.pid" "slurmctld:$STATE/slurmctld.pid" "slurmd:$STATE/slurmd.pid"; do
    name=${pair%%:*}; pidfile=${pair#*:}; pid=$(pid_from "$pidfile")
    if pid_alive "$pid"; then echo "$name: running (pid $pid)"; any=1; else echo "$name: stopped"; fi
  done
  if [ "$any" -eq 1 ] && command -v sinfo >/dev/null; then sinfo 2>&1 || true; squeue 2>&1 || true; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
