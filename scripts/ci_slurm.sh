#!/usr/bin/env bash
# A real single-node SLURM on localhost, private to one folder, for the cluster tests:
#   bash scripts/ci_slurm.sh start DIR [OWNER_PID]   # install if missing, start, wait for the node
#   bash scripts/ci_slurm.sh stop  DIR               # stop everything `start DIR` started
#   bash scripts/ci_slurm.sh run   DIR -- CMD ...    # start, run CMD with SLURM_CONF set, stop
# tests/cli/test_slurm.py calls `start` from a pytest fixture and `stop` when the module ends
# (pytest -m "not slurm" or GEOMORPH_SKIP_SLURM=1 leaves it out); scripts/ci_containers.sh calls
# it inside the Apptainer stand-in. By hand (as root): `start`, export SLURM_CONF=DIR/slurm.conf,
# submit, `stop`; `run` suits a command that waits for its jobs (geomorph-bids --use-plugin
# workflows/nipype_slurm.yml), since `stop` cancels whatever is still queued.
#
# What it starts, each in the foreground of its own session (so its pid is the daemon's pid):
#   munged (own key and socket in DIR), slurmctld, slurmd: Debian's slurm-wlm (22.05 on bookworm),
#   installed from apt when missing (with a temporary policy-rc.d so that apt starts nothing).
#   slurm.conf (DIR/slurm.conf): one node with this machine's CPUs and 90 % of its memory (at
#   least 16 GB declared: memory is not enforced, and the recipes ask for up to 8G), one
#   partition `cpu` (the name workflows/nipype_slurm.yml uses), free TCP ports, daemons and jobs as
#   the calling user (root in CI), proctrack/linuxproc + task/none (no cgroups or systemd needed),
#   select/cons_tres by core (memory requests are checked against the node, not enforced),
#   jobcomp/filetxt (DIR/jobcomp.txt) so that `sacct --completion` reports finished jobs' states
#   and exit codes without slurmdbd or a database, finished jobs kept for `scontrol` 30 min, and
#   MaxArraySize=3 (array indices 0-2) so that the recipe's split of long arrays is exercised.
# Stopping: cancels every job, then TERM (KILL after 10 s) to the recorded daemon pids (DIR/pids),
# to the job step daemons of this instance (slurmstepd, found by their open log file in DIR) and
# their descendants, and to any process carrying this instance's marker in its environment
# (GEOMORPH_CI_SLURM=DIR: the tests pass it to the jobs they submit), so nothing is left running.
# With OWNER_PID, a guard process stops the instance as soon as that process exits, however it
# exits (pytest killed, say).
# Exit status: non-zero when a daemon does not come up (its log's tail is printed).
set -euo pipefail

usage() { sed -n '2,5p' "$0" >&2; exit 2; }
[ "$#" -ge 2 ] || usage
cmd="$1"; dir="$2"; shift 2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { echo "ci_slurm: $*" >&2; }

pid_alive() {  # running (a zombie waiting for its parent to reap it is not)
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null \
    && [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

instance_pids() {  # every process of this instance that is not a recorded daemon:
  # processes carrying the marker in their environment, and the job step daemons (slurmstepd,
  # whose environment is empty: found by their open log file in DIR) with all their descendants
  local p fd roots=()
  for p in /proc/[0-9]*; do
    p="${p#/proc/}"
    [ "$p" != "$$" ] || continue
    if { tr '\0' '\n' < "/proc/$p/environ"; } 2>/dev/null | grep -qxF "GEOMORPH_CI_SLURM=$dir"; then
      roots+=("$p")
    elif [ "$(cat "/proc/$p/comm" 2>/dev/null)" = slurmstepd ]; then
      for fd in "/proc/$p/fd/"*; do
        [[ "$(readlink "$fd" 2>/dev/null)" == "$dir/"* ]] && { roots+=("$p"); break; }
      done
    fi
  done
  [ "${#roots[@]}" -gt 0 ] || return 0
  ps -eo pid=,ppid= | awk -v roots="${roots[*]}" -v self="$$" '
    BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
    { parent[$1] = $2 }
    END {
      do { grew = 0; for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; grew = 1 } } while (grew)
      for (p in keep) if (p != self) print p
    }'
}

stop() {
  [ -d "$dir" ] || return 0
  dir="$(cd "$dir" && pwd)"
  local conf="$dir/slurm.conf" pids=() p name
  if [ -f "$conf" ] && [ -f "$dir/pids" ] && pid_alive "$(sed -n 's/^slurmctld //p' "$dir/pids")"; then
    SLURM_CONF="$conf" scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do  # let slurmd see its jobs end (KillWait 5 s)
      [ -z "$(SLURM_CONF="$conf" squeue -h -o %i 2>/dev/null)" ] && break
      sleep 1
    done
  fi
  if [ -f "$dir/pids" ]; then
    while read -r name p; do
      [ "$p" = "$$" ] && continue  # the guard itself, running this
      pid_alive "$p" || continue
      log "stopping $name (pid $p)"
      pids+=("$p")
      # the guard's `sleep` too
      [ "$name" != guard ] || pids+=($(ps -eo pid=,ppid= | awk -v p="$p" '$2 == p { print $1 }'))
    done < <(tac "$dir/pids")  # guard, slurmd, slurmctld, munged
  fi
  for p in $(instance_pids); do pids+=("$p"); done
  [ "${#pids[@]}" -gt 0 ] || { rm -f "$dir/pids"; return 0; }
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 40); do
    local alive=()
    for p in "${pids[@]}"; do pid_alive "$p" && alive+=("$p"); done
    [ "${#alive[@]}" -eq 0 ] && break
    sleep 0.25
  done
  for p in "${pids[@]}" $(instance_pids); do
    pid_alive "$p" && { log "pid $p did not stop on TERM: KILL"; kill -KILL "$p" 2>/dev/null || true; }
  done
  rm -f "$dir/pids"
}

free_port() {  # a TCP port nothing listens on (bash's /dev/tcp: no python in the SIF stand-in),
  local port   # below Linux's ephemeral range (32768-60999), so no outgoing connection takes it
  while :; do
    port=$(( 20000 + RANDOM % 12000 ))
    (echo > "/dev/tcp/127.0.0.1/$port") >/dev/null 2>&1 || { echo "$port"; return; }
  done
}

install_slurm() {
  local missing=() t
  for t in munged slurmctld slurmd sbatch; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing slurm-wlm and munge from apt (missing: ${missing[*]})"
  local sudo="" made_policy=0
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if [ ! -e /usr/sbin/policy-rc.d ]; then  # apt must not start the packaged daemons
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  local rc=0
  $sudo flock "${TMPDIR:-/tmp}/geomorph-ci-apt.lock" apt-get -o DPkg::Lock::Timeout=600 update -qq || rc=$?
  [ "$rc" = 0 ] && { DEBIAN_FRONTEND=noninteractive $sudo flock "${TMPDIR:-/tmp}/geomorph-ci-apt.lock" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
      slurmctld slurmd slurm-client munge >/dev/null || rc=$?; }
  [ "$made_policy" = 1 ] && $sudo rm -f /usr/sbin/policy-rc.d
  return "$rc"
}

daemon() {  # name logfile command... : start in its own session, record the pid
  local name="$1" logfile="$2"; shift 2
  GEOMORPH_CI_SLURM="$dir" setsid "$@" >> "$logfile" 2>&1 < /dev/null &
  echo "$name $!" >> "$dir/pids"
}

wait_for() {  # seconds what command...
  local secs="$1" what="$2"; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$end" ]; then log "gave up waiting for $what"; return 1; fi
    sleep 0.5
  done
}

fail_start() {
  local f
  for f in "$dir"/munged.log "$dir"/slurmctld.log "$dir"/slurmd.log; do
    [ -f "$f" ] && { echo "--- tail of $f" >&2; tail -n 15 "$f" >&2; }
  done
  stop
  exit 1
}

start() {
  local owner="${1:-}"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  [ "${#dir}" -le 80 ] || { log "DIR is too long for munge's socket path (${#dir} > 80 characters): $dir"; exit 2; }
  stop  # a previous instance in this folder (an interrupted run)
  install_slurm
  rm -rf "${dir:?}"/{state,spool,munge}
  mkdir -p "$dir"/{state,spool,munge}
  chmod 700 "$dir/munge"
  : > "$dir/pids"

  # munge: a key of our own, a socket in DIR; clients find it through AuthInfo in slurm.conf
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge/munge.key"
  daemon munged "$dir/munged.log" munged --foreground --force --socket="$dir/munge/munge.sock" \
    --key-file="$dir/munge/munge.key" --pid-file="$dir/munge/munged.pid" \
    --log-file="$dir/munged.log" --seed-file="$dir/munge/munged.seed"
  wait_for 15 munged test -S "$dir/munge/munge.sock" || fail_start

  local host cpus mem_mb user ctld_port slurmd_port
  host="$(hostname -s)"
  # the machine's CPUs, not OMP_NUM_THREADS' (GNU nproc honours it: a suite run with
  # OMP_NUM_THREADS=1 declared a 1-CPU node, and the recipes' 2-CPU tasks stayed pending for good)
  cpus="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
  # memory is not a consumable here (CR_Core): declare at least 16 GB (SlurmdParameters=
  # config_overrides) so the recipes' own requests (8G, 4G) fit on a smaller CI machine
  mem_mb=$(( $(awk '/^MemTotal:/ { print $2 }' /proc/meminfo) * 9 / 10 / 1024 ))
  [ "$mem_mb" -ge 16384 ] || mem_mb=16384
  user="$(id -un)"
  ctld_port="$(free_port)"; slurmd_port="$(free_port)"
  while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port="$(free_port)"; done
  : > "$dir/plugstack.conf"
  # one stand-in GPU (no device behind it: /dev/null) so that --gres=gpu:1 jobs get the
  # environment a real GPU allocation gives (SLURM_JOB_GPUS, CUDA_VISIBLE_DEVICES)
  echo "NodeName=geomorph-ci Name=gpu File=/dev/null" > "$dir/gres.conf"
  cat > "$dir/slurm.conf" <<EOF
# single-node SLURM written by scripts/ci_slurm.sh for the cluster tests
ClusterName=geomorphci
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$user
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
PlugStackConfig=$dir/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MinJobAge=1800
MaxArraySize=3
KillWait=5
InactiveLimit=0
SlurmdTimeout=60
SlurmctldTimeout=60
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=geomorph-ci NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$cpus RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=geomorph-ci Default=YES MaxTime=60 State=UP
EOF
  # SLURM >= 23 initialises a cgroup plugin in slurmd whatever the task/proctrack plugins are;
  # there is no cgroup here to use (22.05 reads no cgroup.conf with these plugins)
  local major
  major="$(slurmd -V | awk '{ split($2, v, "."); print v[1] }')"
  if [[ "$major" =~ ^[0-9]+$ ]] && [ "$major" -ge 23 ]; then
    echo "CgroupPlugin=disabled" > "$dir/cgroup.conf"
  fi
  export SLURM_CONF="$dir/slurm.conf"
  daemon slurmctld "$dir/slurmctld.log" slurmctld -D -i -f "$SLURM_CONF"
  wait_for 30 slurmctld scontrol ping || fail_start
  daemon slurmd "$dir/slurmd.log" slurmd -D -N geomorph-ci -f "$SLURM_CONF"
  wait_for 60 "the node to be idle" bash -c '[ "$(sinfo -h -N -o %t)" = idle ]' || fail_start

  if [ -n "$owner" ]; then  # stop everything as soon as the owner exits, however it exits
    setsid bash -c \
      'while kill -0 "$1" 2>/dev/null && [ -f "$2/pids" ]; do sleep 2; done; exec bash "$3" stop "$2"' \
      guard "$owner" "$dir" "$here/ci_slurm.sh" >> "$dir/guard.log" 2>&1 < /dev/null &
    echo "guard $!" >> "$dir/pids"
  fi
  log "SLURM $(sinfo -V | awk '{ print $2 }') up on $host: $cpus CPUs, ${mem_mb} MB, partition cpu; SLURM_CONF=$SLURM_CONF"
  echo "SLURM_CONF=$SLURM_CONF"
}

case "$cmd" in
  start) start "${1:-}" ;;
  stop) stop ;;
  run)
    [ "${1:-}" = "--" ] && shift
    [ "$#" -gt 0 ] || usage
    trap stop EXIT
    trap 'exit 130' INT TERM
    start >/dev/null
    SLURM_CONF="$dir/slurm.conf" GEOMORPH_CI_SLURM="$dir" "$@"
    ;;
  *) usage ;;
esac
