#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the Slurm executor's tests
# (tests/integration/slurm.rs) and scripts/bench-slurm.sh: Debian's
# `slurm-wlm` + `munge`, one node named after `hostname` with 2 CPUs, one
# partition `debug`. ../shared/SCALEOUT.md explains the settings; the two
# without which every job fails in this sandbox are `ProctrackType=
# proctrack/linuxproc` and `TaskPlugin=task/none` (no cgroup freezer here).
#
# Idempotent: installs only what is missing (apt-get update once if the
# install fails), rewrites slurm.conf only when it changes, starts only the
# daemons that are not running, and returns once the node is idle. Needs
# root (apt, munged, slurmd). Exits non-zero when the cluster cannot be
# brought up; the tests then skip, saying so.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
HOST="$(hostname)"

say() { echo "setup-slurm: $*" >&2; }

install_packages() {
    local pkgs=(slurm-wlm munge)
    if command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v munged >/dev/null; then
        return 0
    fi
    say "installing ${pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 &&
            apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; }
}

write_conf() {
    mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    # Never claim more memory than the machine has: slurmd drains a node
    # whose configured RealMemory is above what it finds.
    local mem
    mem="$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1 || true)"
    mem="${mem:-4000}"
    if ((mem > 20000)); then mem=20000; fi
    local want
    want="$(cat <<EOF
# Written by retort's scripts/setup-slurm.sh: a one-node test cluster.
ClusterName=retort-test
SlurmctldHost=$HOST
AuthType=auth/munge
SlurmUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName=$HOST CPUs=2 RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
MailProg=/bin/true
EOF
)"
    if [[ -f "$CONF" ]] && [[ "$(cat "$CONF")" == "$want" ]]; then
        return 1
    fi
    printf '%s\n' "$want" >"$CONF"
    say "wrote $CONF"
    return 0
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0
    fi
    mkdir -p /run/munge && chown munge: /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create >/dev/null 2>&1 || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
        chown munge: /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    fi
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 1 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    say "munged does not answer"
    return 1
}

running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop() {
    local pidfile=$1
    running "$pidfile" || return 0
    local pid
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    # SCALEOUT.md: a slurmd started while slurmctld was down once ignored SIGTERM.
    kill -9 "$pid" 2>/dev/null || true
}

node_state() { sinfo -h -n "$HOST" -o '%T' 2>/dev/null | head -n1; }

install_packages
changed=0
write_conf && changed=1
start_munge
if ((changed)); then
    stop /run/slurmd.pid
    stop /run/slurmctld.pid
fi
running /run/slurmctld.pid || slurmctld
running /run/slurmd.pid || slurmd
for _ in $(seq 1 100); do
    case "$(node_state)" in
        idle | mixed | allocated) say "node $HOST is up ($(node_state))"; exit 0 ;;
        down* | drain* | fail*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.2
done
say "node $HOST did not become idle: $(node_state); see /var/log/slurm/"
exit 1
