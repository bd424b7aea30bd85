#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, with accounting (sacct), for the study tests.
#
# Needs root and Debian's packages: slurm-wlm, slurmdbd, munge, mariadb-server
# (`apt-get install -y slurm-wlm slurmdbd munge mariadb-server`). Starts munged,
# MariaDB, slurmdbd, slurmctld and slurmd as background daemons; safe to run twice.
# One partition `debug` holds this node with all its cores and most of its memory.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "slurm-localhost: needs root (it starts system daemons)" >&2
  exit 1
fi
for cmd in munged slurmctld slurmd slurmdbd mariadbd; do
  command -v "$cmd" >/dev/null || { echo "slurm-localhost: $cmd missing: apt-get install -y slurm-wlm slurmdbd munge mariadb-server" >&2; exit 1; }
done

HOST=$(hostname -s)
CPUS=$(nproc)
# Leave 2 GB to the system; what SLURM may hand out, in MB.
MEMORY=$(awk '/MemTotal/ {m = int($2 / 1024) - 2048; print (m > 1024 ? m : 1024)}' /proc/meminfo)

# munge: the authentication every SLURM daemon and command uses.
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge && chown munge:munge /run/munge
pgrep -x munged >/dev/null || runuser -u munge -- munged

# MariaDB: slurmdbd's accounting store.
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
if ! pgrep -x mariadbd >/dev/null; then
  (mariadbd --user=mysql --skip-networking=0 --bind-address=127.0.0.1 >/var/log/mariadb-slurm.log 2>&1 &)
  for _ in $(seq 60); do mariadb -e "select 1" >/dev/null 2>&1 && break; sleep 1; done
fi
mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmdbd-localhost';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
chown slurm:slurm /var/spool/slurmctld /var/log/slurm /run/slurm

cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=/run/slurm/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmdbd-localhost
StorageLoc=slurm_acct_db
EOF
chown slurm:slurm /etc/slurm/slurmdbd.conf && chmod 600 /etc/slurm/slurmdbd.conf

cat >/etc/slurm/slurm.conf <<EOF
ClusterName=localhost
SlurmctldHost=${HOST}
AuthType=auth/munge
SlurmUser=slurm
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
MpiDefault=none
NodeName=${HOST} CPUs=${CPUS} RealMemory=${MEMORY} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
EOF

pgrep -x slurmdbd >/dev/null || slurmdbd
for _ in $(seq 60); do sacctmgr -i show cluster >/dev/null 2>&1 && break; sleep 1; done
sacctmgr -i add cluster localhost >/dev/null 2>&1 || true
pgrep -x slurmctld >/dev/null || slurmctld
# slurmd always loads a cgroup plugin: autodetected first, then each version by name (containers differ).
if ! pgrep -x slurmd >/dev/null; then
  rm -f /etc/slurm/cgroup.conf
  slurmd 2>/dev/null || { echo "CgroupPlugin=cgroup/v1" >/etc/slurm/cgroup.conf && slurmd 2>/dev/null; } \
    || { echo "CgroupPlugin=cgroup/v2" >/etc/slurm/cgroup.conf && slurmd; }
fi
for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE "idle|mix|alloc"; then
    echo "slurm-localhost: partition debug up on ${HOST} (${CPUS} CPUs, ${MEMORY} MB)"
    exit 0
  fi
  scontrol update nodename="${HOST}" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "slurm-localhost: the node did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
exit 1
