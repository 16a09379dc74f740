#!/usr/bin/env bash
# Install (Debian: slurm-wlm, munge, slurmdbd, mariadb-server) and start a single-node
# Slurm cluster with accounting on localhost, for the tests. Idempotent: what runs is
# left running, what is missing is installed or started. Stop it with cluster-down.sh.
set -euo pipefail
STATE=${FUNLORA_SLURM_STATE:-/var/tmp/funlora-slurm}
CONF=/etc/slurm
HOST=$(hostname -s)
log() { echo "[slurm-up] $*"; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_for() {  # wait_for SECONDS command...
  local n=$1; shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  return 1
}

if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v munged >/dev/null \
   || ! command -v mariadbd >/dev/null; then
  log "installing slurm-wlm munge slurmdbd mariadb-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq slurm-wlm munge slurmdbd mariadb-server >/dev/null
fi
mkdir -p "$STATE"/{log,run,ctld,slurmd} "$CONF" /run/munge /run/mysqld

# munge
if [ ! -s /etc/munge/munge.key ]; then
  log "creating the munge key"
  (command -v mungekey >/dev/null && mungekey --create --force) || \
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
if ! alive /run/munge/munged.pid; then
  log "starting munged"
  su -s /bin/sh munge -c "munged --pid-file=/run/munge/munged.pid" </dev/null >/dev/null 2>&1 || munged --force </dev/null >/dev/null 2>&1
fi
wait_for 10 munge -n

# MariaDB for accounting (root over the unix socket, no password)
chown mysql:mysql /run/mysqld
if ! mysqladmin ping >/dev/null 2>&1; then
  log "starting mariadb"
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null 2>&1
  nohup mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid </dev/null >"$STATE/log/mariadb.log" 2>&1 &
  wait_for 30 mysqladmin ping || { log "mariadb did not start"; exit 1; }
fi
mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db"

# configuration
read -r -a NODE <<<"$(slurmd -C | head -n1)"
MEM=$(slurmd -C | head -n1 | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
MEM=$((MEM * 9 / 10))
NODELINE=$(printf '%s ' "${NODE[@]}" | sed "s/NodeName=[^ ]*/NodeName=$HOST NodeAddr=127.0.0.1/; s/RealMemory=[0-9]*/RealMemory=$MEM/")
# GPUs declared as a generic resource, each backed by a placeholder file (slurmd drops a GPU
# without one): enough for slurmctld to schedule --gpus-per-node, so the GPU submission path
# is tested for real on a machine without GPUs. Jobs then see CUDA_VISIBLE_DEVICES set.
GPUS=${FUNLORA_SLURM_GPUS:-1}
mkdir -p "$STATE/dev"
: >"$CONF/gres.conf"
for i in $(seq 0 $((GPUS - 1))); do
  touch "$STATE/dev/nvidia$i"
  echo "NodeName=$HOST Name=gpu File=$STATE/dev/nvidia$i" >>"$CONF/gres.conf"
done
cat >"$CONF/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
CONF
chmod 600 "$CONF/slurmdbd.conf"
cat >"$CONF/slurm.conf" <<CONF
ClusterName=funlora
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2
MailProg=/bin/true
ReturnToService=2
KillWait=5
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
GresTypes=gpu
AccountingStorageTRES=gres/gpu
$NODELINE Gres=gpu:$GPUS State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

if ! alive "$STATE/run/slurmdbd.pid"; then
  log "starting slurmdbd"
  slurmdbd </dev/null >/dev/null 2>&1
fi
wait_for 30 sacctmgr -n list cluster || { log "slurmdbd did not answer"; exit 1; }
sacctmgr -n list cluster format=cluster | grep -qw funlora || sacctmgr -i add cluster funlora >/dev/null
if ! alive "$STATE/run/slurmctld.pid"; then
  log "starting slurmctld"
  slurmctld </dev/null >/dev/null 2>&1
fi
if ! alive "$STATE/run/slurmd.pid"; then
  log "starting slurmd"
  slurmd </dev/null >/dev/null 2>&1
fi
# a drain left in the saved state by an earlier configuration (e.g. before the GPUs) is lifted
for _ in $(seq 60); do
  sinfo -h -o %t | grep -Eq 'idle|mix|alloc' && break
  sinfo -h -o %t | grep -Eq 'drain|drng|inval' && scontrol update nodename="$HOST" state=resume >/dev/null 2>&1
  sleep 1
done
sinfo -h -o %t | grep -Eq 'idle|mix|alloc' || { log "the node did not come up"; sinfo; scontrol show node "$HOST" | grep -i reason; exit 1; }
log "cluster up: $(sinfo -h -o '%P %D %t %c CPUs')"
