#!/usr/bin/env bash
# Start a Slurm cluster on this machine (munged + slurmctld + one slurmd per node), for tests and local sweeps.
#
#   scripts/slurm/start.sh [DIR]      DIR defaults to $AGENTGEN_SLURM_DIR or ${TMPDIR:-/tmp}/agentgen-slurm
#
# Two nodes by default, n1 and n2: Debian's slurmd runs several node daemons on one host (`slurmd -N n1`),
# each on its own port with its own spool, pid and log file, so multi-node jobs (cluster=slurm_multinode)
# run for real. The machine's CPUs are split between the nodes (at least 1 each), so as many single-node
# jobs run at once as there are cores, and a 2-node x 1-task job fits too.
# Everything (munge key and socket, slurm.conf, state, spool, logs, pid files) lives under DIR, so the
# cluster never touches /etc and several checkouts can each run their own (give each its own ports with
# AGENTGEN_SLURM_PORT; the node daemons take the ports after it). Idempotent: daemons already running are
# kept, and a running cluster is reported as is. Needs Debian's slurm-wlm and munge (scripts/install-system.sh).
# Environment knobs: AGENTGEN_SLURM_PORT (6817), AGENTGEN_SLURM_NODES (2), AGENTGEN_SLURM_CPUS (CPUs per node:
# nproc / nodes, at least 1), AGENTGEN_SLURM_TIMEOUT (30 s).
set -euo pipefail

DIR="${1:-${AGENTGEN_SLURM_DIR:-${TMPDIR:-/tmp}/agentgen-slurm}}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd -P)"
CTLD_PORT="${AGENTGEN_SLURM_PORT:-6817}"
NNODES="${AGENTGEN_SLURM_NODES:-2}"
CPUS="${AGENTGEN_SLURM_CPUS:-$(( $(nproc) / NNODES > 0 ? $(nproc) / NNODES : 1 ))}"
READY_TIMEOUT="${AGENTGEN_SLURM_TIMEOUT:-30}"
HOST="$(hostname -s)"
USER_NAME="$(id -un)"
CONF="$DIR/etc/slurm.conf"
T0=$(date +%s.%N)

die() { echo "slurm/start.sh: $*" >&2; exit 1; }
[[ "$NNODES" =~ ^[1-9][0-9]*$ ]] || die "AGENTGEN_SLURM_NODES=$NNODES: give a number of nodes (1 or more)"
NODES=(); for i in $(seq 1 "$NNODES"); do NODES+=("n$i"); done

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

# The daemons outlive this script: they must not inherit its open files. A lock held around it (e.g.
# `flock /tmp/agentgen-slurm.lock scripts/slurm/start.sh`) would otherwise stay held by munged, slurmctld
# and slurmd until the cluster stops. (fd 255 is bash's handle on this script.)
for fd in /proc/$$/fd/*; do
  fd="${fd##*/}"
  case "$fd" in 0|1|2|255) continue ;; esac
  eval "exec $fd>&-" 2>/dev/null || true
done

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
for node in "${NODES[@]}"; do
  pid_alive "$DIR/run/slurmd-$node.pid" slurmd && slurmd_up=$((slurmd_up + 1))
done
if [ "$ctld_up" -eq 0 ] && [ "$slurmd_up" -eq 0 ]; then
  MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  # Memory is not a consumable resource here (CR_Core): every node states the machine's memory, so a job's
  # --mem is checked against what the machine has, as on the former one-node cluster.
  NODE_LINES=""
  for i in "${!NODES[@]}"; do
    NODE_LINES+="NodeName=${NODES[$i]} NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((CTLD_PORT + 1 + i)) "
    NODE_LINES+="CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN"$'\n'
  done
  cat >"$CONF" <<EOF
# ${NNODES}-node agentgen test cluster on one host, written by scripts/slurm/start.sh. Edits are overwritten on restart.
ClusterName=agentgen
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=$USER_NAME
SlurmdUser=$USER_NAME
SlurmctldPort=$CTLD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$DIR/state
# One slurmd per node on this host: %n is the node's name.
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
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
${NODE_LINES}PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
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
for node in "${NODES[@]}"; do
  if ! pid_alive "$DIR/run/slurmd-$node.pid" slurmd; then
    mkdir -p "$DIR/spool/$node"
    slurmd -f "$CONF" -N "$node" || die "slurmd -N $node failed to start; see $DIR/log/slurmd-$node.log"
  fi
done

# ---- wait until every node takes jobs ------------------------------------------------------------------------
deadline=$(( $(date +%s) + READY_TIMEOUT ))
states=""
while :; do
  if scontrol ping 2>/dev/null | grep -q "UP"; then
    ready=0; states=""
    for node in "${NODES[@]}"; do
      # Exact states only: a trailing '*' (e.g. "idle*") means the node is not responding yet.
      state="$(sinfo -h -N -n "$node" -o %T 2>/dev/null | head -n1)"
      states+="$node=${state:-unknown} "
      case "$state" in
        idle|mixed|allocated|completing) ready=$((ready + 1)) ;;
        down|drained|draining|fail|failing)
          # A node left DOWN by an earlier run (e.g. its slurmd was killed) comes back once slurmd is up.
          scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true ;;
      esac
    done
    [ "$ready" -eq "${#NODES[@]}" ] && break
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    die "the cluster is not ready after ${READY_TIMEOUT}s (node states: ${states:-unknown}); see $DIR/log/"
  fi
  sleep 0.3
done

ELAPSED=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
cat <<EOF
Slurm cluster 'agentgen' ready in ${ELAPSED}s: nodes ${NODES[*]} on this host ($CPUS CPU(s) each, no GPUs), partition debug, state under $DIR
Use it from this shell with:
  export SLURM_CONF=$CONF        (or: source $DIR/env.sh)
  python launch.py -m ... cluster=slurm cluster.gpus_per_node=0
Stop it with:
  scripts/slurm/stop.sh $DIR
EOF
