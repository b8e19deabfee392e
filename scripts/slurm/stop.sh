#!/usr/bin/env bash
# Stop the Slurm cluster started by scripts/slurm/start.sh (munged, slurmctld and every node's slurmd).
#
#   scripts/slurm/stop.sh [DIR] [--purge]     DIR as for start.sh; --purge also deletes DIR (state, logs, key)
#
# Stops exactly the daemons whose pid files are under DIR (never by name), first politely (scancel of its jobs,
# scontrol shutdown, SIGTERM), then with SIGKILL after 15 s. Idempotent.
set -euo pipefail

PURGE=0
DIR=""
for arg in "$@"; do
  case "$arg" in
    --purge) PURGE=1 ;;
    -*) echo "slurm/stop.sh: unknown option '$arg' (valid: --purge)" >&2; exit 2 ;;
    *) DIR="$arg" ;;
  esac
done
DIR="${DIR:-${AGENTGEN_SLURM_DIR:-${TMPDIR:-/tmp}/agentgen-slurm}}"
PATH="$PATH:/usr/sbin:/sbin"

if [ ! -d "$DIR" ]; then
  echo "slurm/stop.sh: nothing to stop ($DIR does not exist)"
  exit 0
fi
DIR="$(cd "$DIR" && pwd -P)"

# live_pid PIDFILE NAME: print the pid if the file names a live process whose command is NAME.
live_pid() {
  local pid
  [ -s "$1" ] || return 1
  pid="$(cat "$1")"
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$2" ] && echo "$pid"
}

# Cancel this cluster's jobs first: their slurmstepd/job processes would outlive slurmd otherwise.
if [ -f "$DIR/etc/slurm.conf" ] && live_pid "$DIR/run/slurmctld.pid" slurmctld >/dev/null; then
  export SLURM_CONF="$DIR/etc/slurm.conf"
  if [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
    scancel --user="$(id -un)" >/dev/null 2>&1 || true
    for i in $(seq 1 150); do
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.1
    done
  fi
  scontrol shutdown >/dev/null 2>&1 || true
fi
# `scontrol shutdown` above stops slurmctld and slurmd, saving state; the pid files cover what it missed.

stop_daemon() {  # stop_daemon PIDFILE NAME
  local pid i
  pid="$(live_pid "$1" "$2")" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 150); do
    [ -d "/proc/$pid" ] || return 0
    sleep 0.1
  done
  echo "slurm/stop.sh: $2 (pid $pid) ignored SIGTERM for 15 s, killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
}
for pidfile in "$DIR"/run/slurmd-*.pid "$DIR/run/slurmd.pid"; do  # one per node (slurmd.pid: the older one-node layout)
  if [ -e "$pidfile" ]; then stop_daemon "$pidfile" slurmd; fi
done
stop_daemon "$DIR/run/slurmctld.pid" slurmctld
stop_daemon "$DIR/munge/munged.pid" munged

if [ "$PURGE" -eq 1 ]; then
  rm -rf "$DIR"
  echo "Slurm cluster stopped; $DIR removed"
else
  echo "Slurm cluster stopped (state kept in $DIR; --purge removes it)"
fi
