#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for tests/launch/test_slurm.py (and .ci/run):
# Debian's slurm-wlm and munge, slurmctld and slurmd on this host, accounting off, no cgroups.
# Idempotent: when the node is already up it returns at once; otherwise it installs what is
# missing, writes /etc/slurm/slurm.conf (never over one it did not write), starts what is not
# running and waits until `sinfo` shows the node usable. Run as root (or with sudo).
set -euo pipefail

MARK="# written by hpsearch tools/slurm-cluster.sh"
CONF=/etc/slurm/slurm.conf
NODE=$(hostname -s)
SUDO=$( [ "$(id -u)" = 0 ] || echo sudo )
export PATH="$PATH:/usr/sbin:/sbin"  # the daemons, for a user whose PATH lacks them

node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n1; }
alive() { [ -s "$1" ] && $SUDO kill -0 "$(cat "$1")" 2>/dev/null; }
munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
# sinfo retries for 9 s when no controller answers: ask it only when the daemons are there.
if alive /run/slurmctld.pid && alive /run/slurmd.pid && munge_works; then
  case "$(node_state)" in
    idle|mix|alloc|comp) exit 0 ;;
  esac
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  $SUDO apt-get update -qq
  # The packages' postinst scripts try to start services; with no init system here that is a no-op.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    slurm-wlm munge >/dev/null
fi

if [ -e "$CONF" ] && ! grep -qxF "$MARK" "$CONF"; then
  echo "error: $CONF exists and was not written by this script; not touching it" >&2
  exit 1
fi
# The node line is what slurmd measures here (CPUs, sockets, cores, threads, memory): a node that
# claims more than it has is drained.
NODE_LINE=$(slurmd -C | grep '^NodeName=')
$SUDO mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
$SUDO tee "$CONF.new" >/dev/null <<EOF
$MARK
ClusterName=hpsearch-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# No cgroups: processes are tracked by their parent ids, nothing is confined.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
# FIFO without backfill: every array task that fits starts as soon as it is submitted.
SchedulerType=sched/builtin
# CPUs (not whole cores) are the unit, so each of a 2-thread core's threads can run a 1-CPU task.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished jobs stay visible to scontrol (their exit codes; there is no sacct) for 10 minutes.
MinJobAge=600
ReturnToService=2
NodeName=$NODE NodeAddr=127.0.0.1 ${NODE_LINE#NodeName=* } State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
$SUDO mv "$CONF.new" "$CONF"

# munge: one key, its daemon running as the munge user.
if [ ! -s /etc/munge/munge.key ]; then
  $SUDO mungekey --create --force
  $SUDO chown munge:munge /etc/munge/munge.key
  $SUDO chmod 400 /etc/munge/munge.key
fi
if ! munge_works; then
  $SUDO install -d -o munge -g munge -m 0755 /run/munge
  $SUDO runuser -u munge -- /usr/sbin/munged
fi

if alive /run/slurmctld.pid; then
  $SUDO scontrol reconfigure
else
  $SUDO slurmctld
fi
alive /run/slurmd.pid || $SUDO slurmd

for _ in $(seq 60); do
  case "$(node_state)" in
    idle|mix|alloc|comp) sinfo; exit 0 ;;
    # A node that slurmctld remembers as down (an earlier run's slurmd gone) is usable again.
    down*|drain*|drng*) $SUDO scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
  esac
  sleep 1
done
echo "error: node $NODE did not become idle within 60 s; see /var/log/slurm/" >&2
sinfo >&2 || true
exit 1
