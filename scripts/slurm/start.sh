#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (munged + slurmctld + slurmd), for tests and local sweeps.
#
#   scripts/slurm/start.sh [DIR]      DIR defaults to $AGENTGEN_SLURM_DIR or ${TMPDIR:-/tmp}/agentgen-slurm
#
# Everything (munge key and socket, slurm.conf, state, spool, logs, pid files) lives under DIR, so the
# cluster never touches /etc and several checkouts can each run their own (give each its own ports with
# AGENTGEN_SLURM_PORT; slurmd takes the port after it). Idempotent: daemons already running are kept, and
# a running cluster is reported as is. Needs Debian's slurm-wlm and munge (scripts/install-system.sh).
# Environment knobs: AGENTGEN_SLURM_PORT (6817), AGENTGEN_SLURM_CPUS (nproc), AGENTGEN_SLURM_TIMEOUT (30 s).
set -euo pipefail

DIR="${1:-${AGENTGEN_SLURM_DIR:-${TMPDIR:-/tmp}/agentgen-slurm}}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd -P)"
CTLD_PORT="${AGENTGEN_SLURM_PORT:-6817}"
SLURMD_PORT="$((CTLD_PORT + 1))"
CPUS="${AGENTGEN_SLURM_CPUS:-$(nproc)}"
READY_TIMEOUT="${AGENTGEN_SLURM_TIMEOUT:-30}"
HOST="$(hostname -s)"
USER_NAME="$(id -un)"
CONF="$DIR/etc/slurm.conf"
T0=$(date +%s.%N)

die() { echo "slurm/start.sh: $*" >&2; exit 1; }

for bin in munged mungekey slurmctld slurmd scontrol sinfo; do
  command -v "$bin" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin"
  command -v "$bin" >/dev/null 2>&1 \
    || die "'$bin' not found: install Debian's slurm-wlm and munge (bash scripts/install-system.sh)."
done

# pid_alive PIDFILE NAME: the pid file names a live process whose command is NAME (not a recycled pid).
pid_alive() {
  local pid
  [ -s "$1" ] || return 1
  pid="$(cat "$1")"
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$2" ]
}

# ---- munge: a private daemon with its own key and socket (no /etc/munge, no system service) --------------
# munged insists on: key readable by its owner only, socket directory executable by everyone.
mkdir -p "$DIR/munge" "$DIR/etc" "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/run"
chmod 0755 "$DIR" "$DIR/munge"
MUNGE_SOCKET="$DIR/munge/munge.socket"
if ! pid_alive "$DIR/munge/munged.pid" munged; then
  [ -s "$DIR/munge/munge.key" ] || mungekey --create --keyfile="$DIR/munge/munge.key"
  chmod 0400 "$DIR/munge/munge.key"
  rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
  munged --socket="$MUNGE_SOCKET" --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munge/munged.pid" \
    --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" \
    || die "munged failed to start; see $DIR/munge/munged.log"
fi

# ---- slurm.conf: written only while slurmctld/slurmd are down, so a running cluster never changes under them -
ctld_up=0; slurmd_up=0
pid_alive "$DIR/run/slurmctld.pid" slurmctld && ctld_up=1
pid_alive "$DIR/run/slurmd.pid" slurmd && slurmd_up=1
if [ "$ctld_up" -eq 0 ] && [ "$slurmd_up" -eq 0 ]; then
  MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  cat >"$CONF" <<EOF
# One-node agentgen test cluster, written by scripts/slurm/start.sh. Edits are overwritten on restart.
ClusterName=agentgen
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=$USER_NAME
SlurmdUser=$USER_NAME
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in containers/CI: track processes by parentage, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
# No slurmdbd here: sacct is unavailable, finished jobs are logged to a text file instead.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
JobRequeue=1
InactiveLimit=0
KillWait=10
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
Waittime=0
# No GresTypes: this machine has no GPUs, jobs must not ask for any (cluster.gpus_per_node=0).
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$DIR/env.sh" <<EOF
# source this file to use the agentgen test cluster
export SLURM_CONF=$CONF
EOF
fi
export SLURM_CONF="$CONF"

# ---- daemons -------------------------------------------------------------------------------------------------
if [ "$ctld_up" -eq 0 ]; then
  slurmctld -f "$CONF" || die "slurmctld failed to start; see $DIR/log/slurmctld.log"
fi
if [ "$slurmd_up" -eq 0 ]; then
  slurmd -f "$CONF" || die "slurmd failed to start; see $DIR/log/slurmd.log"
fi

# ---- wait until the node takes jobs ----------------------------------------------------------------------------
deadline=$(( $(date +%s) + READY_TIMEOUT ))
state=""
while :; do
  if scontrol ping 2>/dev/null | grep -q "UP"; then
    # Exact states only: a trailing '*' (e.g. "idle*") means the node is not responding yet.
    state="$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n1)"
    case "$state" in
      idle|mixed|allocated|completing) break ;;
      down|drained|draining|fail|failing)
        # A node left DOWN by an earlier run (e.g. its slurmd was killed) comes back once slurmd is up.
        scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
    esac
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    die "the cluster is not ready after ${READY_TIMEOUT}s (node state '${state:-unknown}'); see $DIR/log/"
  fi
  sleep 0.3
done

ELAPSED=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
cat <<EOF
Slurm cluster 'agentgen' ready in ${ELAPSED}s: node $HOST ($CPUS CPUs, no GPUs), partition debug, state under $DIR
Use it from this shell with:
  export SLURM_CONF=$CONF        (or: source $DIR/env.sh)
  python launch.py -m ... cluster=slurm cluster.gpus_per_node=0
Stop it with:
  scripts/slurm/stop.sh $DIR
EOF
