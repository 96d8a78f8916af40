#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the Slurm backend's test and for trying sweeps
# with --backend slurm. Needs root and the Debian packages slurmctld, slurmd, slurm-client and
# munge (scripts/setup.sh installs them). The daemons run as plain processes (no systemd).
#
#   scripts/local-slurm-cluster.sh start DIR   # then: export SLURM_CONF=DIR/slurm.conf
#   scripts/local-slurm-cluster.sh stop DIR    # stops the daemons that start launched
set -euo pipefail
command=${1:-}
state=${2:-}
[[ -n "$command" && -n "$state" ]] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

wait_for() {  # seconds, test command...
  local tries=$(( $1 * 4 )); shift
  for _ in $(seq "$tries"); do "$@" && return 0; sleep 0.25; done
  return 1
}

start() {
  for tool in slurmctld slurmd munged sinfo; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/setup.sh (as root)" >&2; exit 1; }
  done
  [[ $(id -u) -eq 0 ]] || { echo "a local Slurm cluster needs root" >&2; exit 1; }
  rm -rf "$state"
  mkdir -p "$state"/{state,spool,log}

  # munge authenticates Slurm's messages: one key, one daemon running as the munge user.
  [[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
  install -d -o munge -g munge -m 755 /run/munge
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged
    wait_for 10 test -s /run/munge/munged.pid || { echo "munged did not start" >&2; exit 1; }
    cp /run/munge/munged.pid "$state/munged.pid"
  fi

  cat > "$state/slurm.conf" <<CONF
ClusterName=npusim-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state/state
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerParameters=batch_sched_delay=0
NodeName=localhost CPUs=$(nproc) State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$state/slurm.conf"
  slurmctld
  slurmd -N localhost
  wait_for 10 test -s "$state/slurmctld.pid" -a -s "$state/slurmd.pid" || { echo "Slurm daemons did not start" >&2; exit 1; }
  node_idle() { [[ "$(sinfo -h -n localhost -o %t 2>/dev/null)" == idle ]]; }
  wait_for 30 node_idle || { echo "the Slurm node did not become idle" >&2; tail -n 20 "$state"/log/*.log >&2; exit 1; }
  echo "Slurm is up: export SLURM_CONF=$state/slurm.conf"
}

stop() {
  for daemon in slurmd slurmctld munged; do
    [[ -s "$state/$daemon.pid" ]] || continue
    pid=$(cat "$state/$daemon.pid")
    kill "$pid" 2>/dev/null || true
    wait_for 15 bash -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" 2>/dev/null || true
  done
}

case $command in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
