#!/usr/bin/env bash
# Install, configure and start a one-node SLURM cluster on 127.0.0.1, for testing the
# workflow's SLURM profile against a real scheduler (tests/test_slurm.py calls this).
#
#   sudo scripts/slurm/start-cluster.sh      # prints the line to source, e.g.
#   source /tmp/spectral_anomaly_slurm/cluster.env && sinfo
#   scripts/slurm/stop-cluster.sh            # stops the daemons by the pids recorded here
#
# Needs root (the daemons run as root, without systemd or cgroups) and, the first time,
# apt-get (Debian 12: munge, slurmctld, slurmd, slurm-client = SLURM 22.05).
# Everything else lives in one state folder (SPECTRAL_ANOMALY_SLURM_DIR, default
# /tmp/spectral_anomaly_slurm): slurm.conf, its own munge key and socket, spool and state
# folders, logs, and the pids of the three daemons it started. Outside it only the symbolic link
# /etc/slurm/slurm.conf -> <state>/slurm.conf is made (srun inside jobs reads that path); a
# machine with a slurm.conf of its own is left alone (exit 2). The daemons bind to 127.0.0.1 only.
#
# Idempotent: when the recorded daemons are alive and the node answers, it only prints the
# environment line (well under a second); otherwise it stops what it recorded and starts afresh.
# Exit status: 0 cluster up, 2 cannot install or run here (not root, no apt-get, ...), 1 other failure.
set -euo pipefail

STATE_DIR=${SPECTRAL_ANOMALY_SLURM_DIR:-/tmp/spectral_anomaly_slurm}
CTLD_PORT=${SPECTRAL_ANOMALY_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SPECTRAL_ANOMALY_SLURMD_PORT:-6818}
NODE_NAME=localnode
PARTITION=debug
# Plugins' status checks (snakemake-executor-plugin-slurm with squeue) need finished jobs to
# stay visible for more than 3 x slurm-init-seconds-before-status-checks.
MIN_JOB_AGE=600
JOBS_PER_CORE=${SPECTRAL_ANOMALY_SLURM_JOBS_PER_CORE:-2}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

say() { echo "start-cluster: $*" >&2; }
cannot() { say "cannot run a cluster here: $*"; exit 2; }

[ "$(id -u)" -eq 0 ] || cannot "needs root (the daemons run as root), running as uid $(id -u)"

install_packages() {
    local missing=()
    command -v munged >/dev/null || missing+=(munge)
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    { command -v sbatch >/dev/null && command -v squeue >/dev/null && command -v sinfo >/dev/null; } || missing+=(slurm-client)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || cannot "packages ${missing[*]} missing and no apt-get"
    say "installing ${missing[*]}"
    # Without systemd, the packages' postinst would try to start the system daemons through
    # invoke-rc.d: forbid that for the install (the cluster here runs its own daemons).
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1
    fi
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}")
    local ok=0
    "${apt[@]}" >"$STATE_DIR/log/apt.log" 2>&1 && ok=1
    if [ $ok -eq 0 ]; then
        apt-get update -q >>"$STATE_DIR/log/apt.log" 2>&1 && "${apt[@]}" >>"$STATE_DIR/log/apt.log" 2>&1 && ok=1
    fi
    [ $created_policy -eq 1 ] && rm -f "$policy"
    [ $ok -eq 1 ] || cannot "apt-get install ${missing[*]} failed: $(tail -n 3 "$STATE_DIR/log/apt.log" | tr '\n' ' ')"
}

# The pid recorded for a daemon, if that process is still the daemon it was.
alive() {
    local name=$1 binary=$2 pid
    [ -s "$STATE_DIR/pids/$name" ] || return 1
    pid=$(cat "$STATE_DIR/pids/$name")
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$binary" || return 1
    echo "$pid"
}

node_state() { sinfo -h -n "$NODE_NAME" -o '%t' 2>/dev/null | head -n 1; }

mkdir -p "$STATE_DIR"/{log,pids,munge,run,slurmctld,slurmd}
chmod 700 "$STATE_DIR" "$STATE_DIR/munge"
install_packages

export SLURM_CONF=$STATE_DIR/slurm.conf
ENV_FILE=$STATE_DIR/cluster.env
echo "export SLURM_CONF=$SLURM_CONF" >"$ENV_FILE"
# Inside a job, Snakemake's job step starts `srun` with every SLURM_* variable removed
# (SLURM_CONF too), so srun reads the default /etc/slurm/slurm.conf: that is made a link to this
# cluster's file, unless the machine has a slurm.conf of its own (then this cluster cannot run here).
SYSTEM_CONF=/etc/slurm/slurm.conf
if [ -e "$SYSTEM_CONF" ] || [ -L "$SYSTEM_CONF" ]; then
    [ "$(readlink "$SYSTEM_CONF")" = "$SLURM_CONF" ] ||
        cannot "$SYSTEM_CONF exists and is not this test cluster's; not touching a configured SLURM"
fi

# --- configuration ---------------------------------------------------------------------
# The machine's real CPUs and memory, as slurmd sees them (less 5 % memory for the system).
hardware=$(slurmd -C | head -n 1)
cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hardware")
real_memory=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hardware")
[ -n "$cpus" ] && [ -n "$real_memory" ] || { say "cannot read the hardware from 'slurmd -C': $hardware"; exit 1; }
real_memory=$((real_memory * 95 / 100))

if [ ! -s "$STATE_DIR/munge/munge.key" ]; then
    dd if=/dev/urandom of="$STATE_DIR/munge/munge.key" bs=1024 count=1 status=none
fi
chmod 400 "$STATE_DIR/munge/munge.key"

cat >"$SLURM_CONF.new" <<EOF
# One-node SLURM for tests, written by scripts/slurm/start-cluster.sh; do not edit.
ClusterName=spectral-anomaly-test
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
# Listen on 127.0.0.1 only, not on every interface.
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE_DIR/munge/munge.socket
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd/%n
SlurmctldPidFile=$STATE_DIR/run/slurmctld.pid
SlurmdPidFile=$STATE_DIR/run/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups (none without systemd): processes tracked through /proc, CPUs bound by affinity.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: sacct has nothing to ask, so job states come from squeue, which shows a
# finished job for MinJobAge seconds.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=$MIN_JOB_AGE
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
KillWait=5
MpiDefault=none
SwitchType=switch/none
# One node, the machine itself, without GRES: GPU requests would stay pending for ever.
NodeName=$NODE_NAME NodeHostname=$(hostname -s) NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_memory State=UNKNOWN
# Up to JOBS_PER_CORE jobs share a core (FORCE:1 = one job per core): small test jobs mostly
# wait for process start-up and the file system, not for the CPU.
PartitionName=$PARTITION Nodes=$NODE_NAME Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:$JOBS_PER_CORE
EOF

# Fast path: the recorded daemons run with this very configuration and the node is usable.
if cmp -s "$SLURM_CONF.new" "$SLURM_CONF" && alive munged munged >/dev/null &&
    alive slurmctld slurmctld >/dev/null && alive slurmd slurmd >/dev/null; then
    case "$(node_state)" in
    idle | mix | alloc | comp)
        rm -f "$SLURM_CONF.new"
        say "already running (state in $STATE_DIR)"
        echo "source $ENV_FILE"
        exit 0
        ;;
    esac
fi
"$HERE/stop-cluster.sh" >/dev/null 2>&1 || true
mv "$SLURM_CONF.new" "$SLURM_CONF"
[ -e "$SYSTEM_CONF" ] || [ -L "$SYSTEM_CONF" ] || { mkdir -p /etc/slurm && ln -s "$SLURM_CONF" "$SYSTEM_CONF"; }

# --- daemons, started by hand and recorded by pid ---------------------------------------
start_daemon() {
    local name=$1
    shift
    setsid "$@" >>"$STATE_DIR/log/$name.out" 2>&1 </dev/null &
    echo $! >"$STATE_DIR/pids/$name"
}

start_daemon munged munged --foreground --force \
    --key-file="$STATE_DIR/munge/munge.key" --socket="$STATE_DIR/munge/munge.socket" \
    --pid-file="$STATE_DIR/run/munged.pid" --log-file="$STATE_DIR/log/munged.log" \
    --seed-file="$STATE_DIR/munge/munged.seed"
for _ in $(seq 50); do [ -S "$STATE_DIR/munge/munge.socket" ] && break; sleep 0.1; done
munge -n --socket="$STATE_DIR/munge/munge.socket" | unmunge --socket="$STATE_DIR/munge/munge.socket" >/dev/null ||
    { say "munged does not work, see $STATE_DIR/log/munged.log"; exit 1; }

# -c: start clean, without jobs or node states of an earlier cluster.
start_daemon slurmctld slurmctld -D -c -f "$SLURM_CONF"
start_daemon slurmd slurmd -D -N "$NODE_NAME" -f "$SLURM_CONF"

for _ in $(seq 150); do
    state=$(node_state)
    case "$state" in
    idle | mix | alloc) break ;;
    down* | drain* | drng*) scontrol update NodeName="$NODE_NAME" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    for name in slurmctld slurmd; do
        alive "$name" "$name" >/dev/null || { say "$name exited, see $STATE_DIR/log/$name.log and $name.out"; exit 1; }
    done
    sleep 0.2
done
state=$(node_state)
case "$state" in
idle | mix | alloc) ;;
*) say "node $NODE_NAME not idle after 30 s (state '${state}'), see $STATE_DIR/log"; exit 1 ;;
esac
say "one-node cluster up: $cpus CPUs, $real_memory MB, partition $PARTITION (state in $STATE_DIR)"
echo "source $ENV_FILE"
