#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine (for the tests of the slurm_*.sh launch scripts).
#
#   sudo bash scripts/slurm_local.sh start     # install (Debian packages) if needed, configure, start; idempotent
#   bash scripts/slurm_local.sh status
#   sudo bash scripts/slurm_local.sh stop
#
# Needs root (apt-get, munge key, daemons). Configuration: one node named after this host with all its CPUs and
# memory, one partition "debug" (default), no accounting, cgroup-free process tracking so it works in containers.
set -euo pipefail
cmd="${1:-start}"
conf_dir=/etc/slurm
state_dir=/var/spool/slurmctld
node="$(hostname -s)"

status() { sinfo -h -o "%P %a %D %T %C" 2>/dev/null; }

case "$cmd" in
  status) status; exit $? ;;
  stop)
    pkill -x slurmd 2>/dev/null || true; pkill -x slurmctld 2>/dev/null || true; pkill -x munged 2>/dev/null || true
    exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac

[ "$(id -u)" = 0 ] || { echo "error: starting SLURM needs root (apt-get, munge key, daemons)" >&2; exit 3; }
if ! command -v slurmd >/dev/null || ! command -v slurmctld >/dev/null || ! command -v srun >/dev/null; then
  echo "[slurm] installing slurmd slurmctld munge slurm-client (Debian packages)" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmd slurmctld munge slurm-client >/dev/null
fi
if status | grep -q " up "; then echo "[slurm] already running: $(status)" >&2; exit 0; fi

cpus="$(nproc)"
mem_mb="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
mkdir -p "$conf_dir" "$state_dir" /var/spool/slurmd /var/log/slurm /run/munge /etc/munge
cat > "$conf_dir/slurm.conf" <<CONF
ClusterName=local
SlurmctldHost=$node
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=$state_dir
SlurmUser=root
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
KillWait=10
NodeName=$node CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || su -s /bin/sh munge -c "/usr/sbin/munged" 2>/dev/null || /usr/sbin/munged --force
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 1 60); do
  if status | grep -q " up .* idle"; then echo "[slurm] up: $(status)" >&2; exit 0; fi
  scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "error: SLURM did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
status >&2 || true
exit 4
