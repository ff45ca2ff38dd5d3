#!/usr/bin/env bash
# Stop the one-node SLURM cluster that scripts/slurm/start-cluster.sh started: only the
# processes whose pids that script recorded (never by name), slurmd and slurmctld first, then
# munged, and the /etc/slurm/slurm.conf link it made. Safe to run twice, or when nothing was started.
set -uo pipefail

STATE_DIR=${SPECTRAL_ANOMALY_SLURM_DIR:-/tmp/spectral_anomaly_slurm}
[ -d "$STATE_DIR/pids" ] || exit 0

# Is pid still the process that was recorded (its command line names the binary)?
is_daemon() {
    local pid=$1 binary=$2
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$binary"
}

stop() {
    local name=$1 pid
    [ -s "$STATE_DIR/pids/$name" ] || return 0
    pid=$(cat "$STATE_DIR/pids/$name")
    if is_daemon "$pid" "$name"; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 100); do is_daemon "$pid" "$name" || break; sleep 0.1; done
        if is_daemon "$pid" "$name"; then
            echo "stop-cluster: $name ($pid) ignored SIGTERM for 10 s, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    rm -f "$STATE_DIR/pids/$name"
}

stop slurmd
stop slurmctld
stop munged
# the link that start-cluster.sh made, if it is still there and still points to this cluster
if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$STATE_DIR/slurm.conf" ]; then
    rm -f /etc/slurm/slurm.conf
fi
echo "stop-cluster: stopped (state in $STATE_DIR)"
