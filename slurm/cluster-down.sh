#!/usr/bin/env bash
# Stop the test cluster started by cluster-up.sh, by PID (never by process name).
set -u
STATE=${FUNLORA_SLURM_STATE:-/var/tmp/funlora-slurm}
stop() {  # stop PIDFILE NAME
  [ -f "$1" ] || return 0
  local pid; pid=$(cat "$1")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "[slurm-down] stopped $2 ($pid)"
  fi
  rm -f "$1"
}
stop "$STATE/run/slurmd.pid" slurmd
stop "$STATE/run/slurmctld.pid" slurmctld
stop "$STATE/run/slurmdbd.pid" slurmdbd
stop /run/mysqld/mysqld.pid mariadb
stop /run/munge/munged.pid munged
exit 0
