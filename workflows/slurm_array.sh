#!/usr/bin/env bash
# geomorph-bids on a SLURM cluster: one participant per array task, in the Apptainer image or a
# native install. Submit every participant (labels from BIDS_DIR/participants.tsv, or
# GEOMORPH_LABELS=FILE, one label per line, "sub-" optional), then resubmit only those whose task
# failed or never ran:
#   export GEOMORPH_SIF=/path/to/geomorph-bids.sif   # or leave unset: geomorph-bids from PATH
#   bash workflows/slurm_array.sh --submit          BIDS_DIR OUTPUT_DIR [geomorph-bids options]
#   bash workflows/slurm_array.sh --resubmit-failed BIDS_DIR OUTPUT_DIR [geomorph-bids options]
#   bash workflows/slurm_array.sh --dry-run         BIDS_DIR OUTPUT_DIR [...]   # print, submit and write nothing
#   bash workflows/slurm_array.sh --list-unfinished BIDS_DIR OUTPUT_DIR   # label file for SGE/PBS
# Extra sbatch options go in GEOMORPH_SBATCH_ARGS, e.g. "--partition=gpu --gres=gpu:1 --account=X";
# they override the defaults (2 CPUs, --mem=8G, 30 min per participant; no --mem when they ask for
# memory another way, e.g. --mem-per-cpu, which sbatch refuses beside --mem).
#
# Tested against a real single-node SLURM: 22.05 with a native install (tests/cli/test_slurm.py)
# and 26.05 with the SIF (scripts/ci_containers.sh); docs/scaling.md, "SLURM array (one participant per task)".
#
# Submitting (run on a login node, from any folder)
#   - runs geomorph-bids in GEOMORPH_SIF with Apptainer/Singularity when that is set, else the
#     geomorph-bids found on PATH (or GEOMORPH_BIDS=/path/to/venv/bin/geomorph-bids): a native
#     install must be on storage the compute nodes see;
#   - passes the submitting environment to the tasks (sbatch --export=ALL; GEOMORPH_SIF,
#     GEOMORPH_BIDS and the label file as absolute paths, so spaces and commas in them are safe);
#   - splits more participants than the cluster's MaxArraySize allows into several arrays;
#   - records every array it submits in OUTPUT_DIR/logs/slurm/submitted.tsv (job id, label file),
#     so that --resubmit-failed leaves out participants whose task is still pending or running;
#   - prints the sbatch line that runs the group level once every task of those arrays has ended
#     (--dependency=afterany:IDS; started beside the tasks it would miss the unfinished ones).
# Each task
#   - takes the label on line $SLURM_ARRAY_TASK_ID of its label list (SGE_TASK_ID and
#     PBS_ARRAY_INDEX work too: workflows/sge_array.sh and pbs_array.sh call this script);
#   - with the SIF: `apptainer run --containall` with BIDS_DIR bound read-only and OUTPUT_DIR bound
#     writable, each at the same path as on the host (so every path option works), and the task's
#     scratch as the container's /tmp (the Nipype work folder is /tmp/work there);
#     GEOMORPH_BINDS="SRC[:DST[:ro]],..." adds binds (a FreeSurfer SUBJECTS_DIR elsewhere, say);
#   - adds --device cuda (and --nv) when it has a GPU: a partition whose name matches
#     GEOMORPH_GPU_PARTITIONS (default "gpu"), or GPUs allocated to the job (--gres/--gpus);
#     GEOMORPH_GPU=0/1 forces it;
#   - works in node-local scratch: $SLURM_TMPDIR, else $TMPDIR, else /tmp (the first that is a
#     writable folder on the node; a login node's $TMPDIR is often missing there): a Nipype work
#     folder and a TMPDIR per task, removed afterwards, also after a time-out (GEOMORPH_KEEP_WORK=1
#     keeps them);
#   - gets --nprocs/--omp-nthreads from --cpus-per-task and --mem-gb from --mem or --mem-per-cpu;
#   - exits with geomorph-bids' status (sacct: COMPLETED 0:0, or FAILED with its exit code) and
#     records OUTPUT_DIR/logs/slurm/sub-<label>.ok on success or when written but flagged by a
#     quality gate (exit 3, FAILED 3:0: it says so), sub-<label>.failed (exit status, job, log) on
#     failure; --resubmit-failed submits every label without .ok that is not still
#     queued (failed, timed out, killed for memory, cancelled or never started).
# Logs: OUTPUT_DIR/logs/slurm/geomorph_<array job id>_<task>.log; crash files under OUTPUT_DIR/logs.
#
#SBATCH --job-name=geomorph-bids
#SBATCH --time=00:30:00
#SBATCH --output=geomorph_%A_%a.log
# (--cpus-per-task and --mem are given by --submit, not here: an #SBATCH --mem line would make
# sbatch refuse a --mem-per-cpu or --mem-per-gpu from GEOMORPH_SBATCH_ARGS)
set -euo pipefail

usage() { sed -n '2,13p' "$0" >&2; exit 2; }

mode=task
case "${1:-}" in
  --submit) mode=submit; shift ;;
  --resubmit-failed) mode=resubmit; shift ;;
  --dry-run) mode=dry-run; shift ;;
  --list-unfinished) mode=list; shift ;;
  -h|--help) usage ;;
esac
if [ "$#" -ge 2 ]; then
  bids_dir="$1"; output_dir="$2"; shift 2
else  # PBS cannot pass arguments to a job script: the same through the environment
  bids_dir="${GEOMORPH_BIDS_DIR:-}"; output_dir="${GEOMORPH_OUTPUT_DIR:-}"
  # shellcheck disable=SC2086
  set -- ${GEOMORPH_OPTS:-}
fi
[ -n "$bids_dir" ] && [ -n "$output_dir" ] || usage
[ -d "$bids_dir" ] || { echo "BIDS_DIR: no such folder: $bids_dir" >&2; exit 2; }
bids_dir="$(cd "$bids_dir" && pwd)"
status_dir="logs/slurm"
if [[ "$mode" =~ ^(submit|resubmit|dry-run)$ ]] && [[ "$(realpath -m -- "$output_dir")" == *\\* ]]; then
  # sbatch drops every backslash of an --output path and then expands none of its patterns: the
  # tasks fail before they start (FAILED 0:53), unlogged (a '%' is doubled instead, in submit)
  echo "OUTPUT_DIR holds a backslash, which sbatch removes from the tasks' log paths (each task would fail" \
       "before it starts, with no log): $(realpath -m -- "$output_dir"); choose a folder without one" >&2
  exit 2
fi
if [ "$mode" = dry-run ]; then  # writes nothing: the output folder need not exist yet
  output_dir="$(realpath -m -- "$output_dir")"
  status_dir="$output_dir/$status_dir"
else
  mkdir -p "$output_dir"
  output_dir="$(cd "$output_dir" && pwd)"
  status_dir="$output_dir/$status_dir"
  mkdir -p "$status_dir"
fi

all_labels() {  # one label per line, no "sub-"
  local file="${GEOMORPH_LABELS:-$bids_dir/participants.tsv}"
  [ -f "$file" ] || { echo "no label list: $file (set GEOMORPH_LABELS)" >&2; return 1; }
  if [[ "$file" == *.tsv ]]; then
    awk -F'\t' 'NR > 1 && $1 != "" { print $1 }' "$file"
  else
    grep -v -E '^[[:space:]]*(#|$)' "$file" | awk '{ print $1 }'
  # each label once ("sub-01" and "01" are one participant): two tasks of one participant run at
  # once, and the one the other's lock skips is a FAILED task beside a .ok
  fi | sed -e 's/^sub-//' -e 's/\r$//' | awk '!seen[$0]++'
}

queued_labels() {  # labels of our recorded arrays whose task is still pending or running
  local jobs="$status_dir/submitted.tsv" jobid file idx
  [ -f "$jobs" ] && command -v squeue >/dev/null 2>&1 || return 0
  while IFS=$'\t' read -r jobid file; do
    [ -n "$jobid" ] && [ -f "$file" ] || continue
    # -r: one line per array task; %K: its index (a job that left the queue prints nothing)
    for idx in $(squeue -h -r -j "$jobid" -o %K 2>/dev/null || true); do
      [[ "$idx" =~ ^[0-9]+$ ]] && sed -n "${idx}p" "$file"
    done
  done < "$jobs"
}

unfinished_labels() {  # labels without .ok, less those still queued (reported on stderr)
  local queued label n_queued=0
  queued="$(queued_labels | sort -u)"
  while read -r label; do
    [ -n "$label" ] || continue
    [ -f "$status_dir/sub-$label.ok" ] && continue
    if grep -qxF -- "$label" <<< "$queued"; then n_queued=$((n_queued + 1)); continue; fi
    echo "$label"
  done < <(all_labels)
  [ "$n_queued" = 0 ] || echo "$n_queued unfinished participant(s) still pending or running: not resubmitted" >&2
}

max_array_index() {  # the cluster's MaxArraySize - 1 (1000 when it cannot be read)
  local max
  max="$(scontrol show config 2>/dev/null | awk '$1 == "MaxArraySize" { print $3 }' || true)"
  [[ "$max" =~ ^[0-9]+$ ]] && [ "$max" -gt 1 ] && echo $((max - 1)) || echo 1000
}

runtime_env() {  # GEOMORPH_SIF or GEOMORPH_BIDS, absolute, for the tasks
  if [ -n "${GEOMORPH_SIF:-}" ]; then
    [ -f "$GEOMORPH_SIF" ] || { echo "GEOMORPH_SIF: no such file: $GEOMORPH_SIF" >&2; return 1; }
    GEOMORPH_SIF="$(readlink -f "$GEOMORPH_SIF")"
    export GEOMORPH_SIF
    echo "runtime: Apptainer image $GEOMORPH_SIF"
    return 0
  fi
  local exe="${GEOMORPH_BIDS:-$(command -v geomorph-bids || true)}"
  [ -n "$exe" ] && [ -x "$exe" ] || {
    echo "set GEOMORPH_SIF to the geomorph-bids .sif image, or put geomorph-bids on PATH (or GEOMORPH_BIDS=/path/to/geomorph-bids)" >&2
    return 1; }
  # the venv's own script, not a link to it: its shebang names the venv's python
  GEOMORPH_BIDS="$(cd "$(dirname "$exe")" && pwd)/$(basename "$exe")"
  export GEOMORPH_BIDS
  echo "runtime: native install $GEOMORPH_BIDS (must be visible on the compute nodes)"
}

submit() {  # label_file [geomorph-bids options]
  local list="$1" n max start part chunk jobid ids=""
  shift
  n="$(grep -c . "$list" || true)"
  if [ "$n" = 0 ] && [ "$(all_labels | grep -c . || true)" = 0 ]; then
    # an empty participants.tsv (a header only) is no finished cohort
    echo "no participant labels in ${GEOMORPH_LABELS:-$bids_dir/participants.tsv}: nothing submitted (fill it in, or set GEOMORPH_LABELS to a file of labels, one a line)" >&2
    return 1
  fi
  if [ "$n" = 0 ]; then echo "nothing to submit: every participant has finished ($status_dir/sub-*.ok)"; return 0; fi
  max="$(max_array_index)"
  # defaults that the user's options replace; sbatch refuses two of a mutually exclusive family
  local user=" ${GEOMORPH_SBATCH_ARGS:-} " defaults=()
  [[ "$user" =~ [[:space:]](-c|--cpus-per-task|--cpus-per-gpu) ]] || defaults+=(--cpus-per-task=2)
  [[ "$user" =~ [[:space:]]--mem(=|-per-|[[:space:]]) ]] || defaults+=(--mem=8G)
  echo "$n participant(s) from $list: $(paste -sd ' ' "$list")"
  part=0
  for ((start = 1; start <= n; start += max)); do
    chunk="$list"
    if [ "$n" -gt "$max" ]; then  # the cluster's MaxArraySize: one array per chunk
      part=$((part + 1))
      chunk="${list%.txt}-part$part.txt"
      sed -n "${start},$((start + max - 1))p" "$list" > "$chunk"
    fi
    local k cmd
    k="$(grep -c . "$chunk")"
    # sbatch expands %-patterns in the whole --output path (%u: the user, %j: the job id): a '%' of
    # the folder's own name is doubled, else the log's folder does not exist and the task fails
    # unlogged, unmarked (FAILED 0:53)
    cmd=(sbatch --parsable --export=ALL --array="1-${k}%${GEOMORPH_ARRAY_LIMIT:-50}"
         --output="${status_dir//%/%%}/geomorph_%A_%a.log" "${defaults[@]}")
    # shellcheck disable=SC2206  # word splitting of the user's sbatch options is intended
    cmd+=(${GEOMORPH_SBATCH_ARGS:-} "$(readlink -f "$0")" "$bids_dir" "$output_dir" "$@")
    printf '+ GEOMORPH_LABELS=%q' "$chunk"; printf ' %q' "${cmd[@]}"; echo
    [ "$mode" = dry-run ] && continue
    jobid="$(GEOMORPH_LABELS="$chunk" "${cmd[@]}")"
    jobid="${jobid%%;*}"  # --parsable prints "id" or "id;cluster"
    printf '%s\t%s\n' "$jobid" "$chunk" >> "$status_dir/submitted.tsv"
    echo "submitted array job $jobid (tasks 1-$k); logs: $status_dir/geomorph_${jobid}_<task>.log"
    ids="$ids:$jobid"
  done
  [ -n "$ids" ] || return 0
  # the group level reads every participant's outputs: started beside the tasks, it misses the
  # unfinished ones (geomorph-bids then says so on a warning line)
  local group=()
  if [ -n "${GEOMORPH_SIF:-}" ]; then
    group=(apptainer run --containall -B "$bids_dir:$bids_dir:ro" -B "$output_dir:$output_dir" "$GEOMORPH_SIF")
  else
    group=("$GEOMORPH_BIDS")
  fi
  group+=("$bids_dir" "$output_dir" group)
  printf 'the group level, once every task has ended: sbatch --dependency=afterany%s --output=%q --wrap=%q\n' \
    "$ids" "${status_dir//%/%%}/group_%j.log" "$(printf '%q ' "${group[@]}")"
}

if [ "$mode" != task ]; then
  all_labels > /dev/null || exit 1  # the label list is missing: said once, nothing written
  stamp="$(date +%Y%m%d-%H%M%S)-$$"
  list="$status_dir/labels-$stamp.txt"
  if [ "$mode" = list ]; then
    unfinished_labels > "$list"
    echo "$(grep -c . "$list" || true) unfinished label(s) in $list (submit with GEOMORPH_LABELS=$list)"
    exit 0
  fi
  if [ "$mode" = dry-run ]; then
    # the label list goes to a temporary file, and a missing runtime is said but does not stop the print
    list="$(mktemp "${TMPDIR:-/tmp}/geomorph-labels-$stamp.XXXXXX")"
    trap 'rm -f "$list"' EXIT  # a dry run leaves nothing behind
    runtime_env || echo "(dry run: --submit would stop here)" >&2
  else
    runtime_env
  fi
  if [ "$mode" = resubmit ]; then
    unfinished_labels > "$list" || { rm -f "$list"; exit 1; }
  else
    all_labels > "$list" || { rm -f "$list"; exit 1; }
  fi
  submit "$list" "$@" || { rm -f "$list"; exit 1; }
  if [ "$mode" = dry-run ]; then  # the line above names a file that is gone once this dry run ends
    echo "(dry run: nothing submitted; the label list $list is removed now: --submit writes its own to" \
         "${status_dir}/labels-<time>.txt)"
  fi
  exit 0
fi

# ------------------------------------------------------------------------------ one task
task="${SLURM_ARRAY_TASK_ID:-${SGE_TASK_ID:-${PBS_ARRAY_INDEX:-${PBS_ARRAYID:-}}}}"
[[ "$task" =~ ^[0-9]+$ ]] || { echo "not an array task (array task index '$task'); use --submit" >&2; exit 2; }
label="$(all_labels | sed -n "${task}p")"
[ -n "$label" ] || { echo "no label on line $task of ${GEOMORPH_LABELS:-$bids_dir/participants.tsv}" >&2; exit 2; }
job="${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-${JOB_ID:-${PBS_JOBID:-$$}}}}"
log="$status_dir/geomorph_${job}_${task}.log"
rm -f "$status_dir/sub-$label.ok" "$status_dir/sub-$label.failed"

run=()
if [ -n "${GEOMORPH_SIF:-}" ]; then
  apptainer="${GEOMORPH_APPTAINER:-$(command -v apptainer || command -v singularity || true)}"
  [ -n "$apptainer" ] || { echo "neither apptainer nor singularity is on PATH (module load apptainer?)" >&2; exit 1; }
  run=("$apptainer" run --containall)
else
  exe="${GEOMORPH_BIDS:-$(command -v geomorph-bids || true)}"
  [ -n "$exe" ] && [ -x "$exe" ] || { echo "geomorph-bids not found on this node (${exe:-not on PATH}); set GEOMORPH_SIF or GEOMORPH_BIDS" >&2; exit 1; }
fi

cpus="${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-${NSLOTS:-${NCPUS:-2}}}}"
mem_gb=""
if [ -n "${SLURM_MEM_PER_NODE:-}" ]; then mem_gb=$(( SLURM_MEM_PER_NODE / 1024 ))
elif [ -n "${SLURM_MEM_PER_CPU:-}" ]; then mem_gb=$(( SLURM_MEM_PER_CPU * cpus / 1024 )); fi
[ "$mem_gb" != 0 ] || mem_gb=1

gpu="${GEOMORPH_GPU:-auto}"
if [ "$gpu" = auto ]; then
  gpu=0
  if [[ "${SLURM_JOB_PARTITION:-}" =~ ${GEOMORPH_GPU_PARTITIONS:-gpu} ]] \
     || [ -n "${SLURM_JOB_GPUS:-}${SLURM_GPUS_ON_NODE:-}${SLURM_STEP_GPUS:-}" ]; then
    gpu=1
  fi
fi

# node-local scratch: the submitting shell's TMPDIR travels with --export=ALL and may not exist here
base=""
for candidate in "${SLURM_TMPDIR:-}" "${TMPDIR:-}" /tmp; do
  if [ -n "$candidate" ] && [ -d "$candidate" ] && [ -w "$candidate" ]; then base="$candidate"; break; fi
  [ -z "$candidate" ] || echo "scratch: $candidate is not a writable folder on this node; trying the next" >&2
done
scratch="$(mktemp -d "$base/geomorph-${job}-${task}.XXXXXX")"
mkdir -p "$scratch/work" "$scratch/tmp"
cleanup() { [ "${GEOMORPH_KEEP_WORK:-0}" = 1 ] || rm -rf "$scratch"; }
trap cleanup EXIT
# a time limit or scancel sends SIGTERM to the whole job: stop waiting, clean up, say so
on_term() {
  printf '%s job %s_%s terminated (SIGTERM: time limit or scancel) log %s\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$job" "$task" "$log" > "$status_dir/sub-$label.failed"
  echo "sub-$label: terminated (time limit or scancel); resubmit with --resubmit-failed" >&2
  exit 143
}
trap on_term TERM

work="$scratch/work"
[ -z "${GEOMORPH_SIF:-}" ] || work=/tmp/work  # in the container: $scratch/tmp/work (one bind, no nesting)
args=("$bids_dir" "$output_dir" participant --participant-label "$label" -w "$work"
      --nprocs "$cpus" --omp-nthreads "$cpus")
[ -z "$mem_gb" ] || args+=(--mem-gb "$mem_gb")
[ "$gpu" = 1 ] && args+=(--device cuda)

if [ -n "${GEOMORPH_SIF:-}" ]; then
  for path in "$bids_dir" "$output_dir" "$scratch"; do  # Apptainer's bind syntax splits on : and ,
    [[ "$path" != *[:,]* ]] || { echo "Apptainer cannot bind a path with ':' or ',': $path" >&2; exit 2; }
  done
  run+=(-B "$bids_dir:$bids_dir:ro" -B "$output_dir:$output_dir" -B "$scratch/tmp:/tmp")
  IFS=',' read -r -a extra <<< "${GEOMORPH_BINDS:-}"
  for b in "${extra[@]}"; do [ -n "$b" ] && run+=(-B "$b"); done
  [ "$gpu" = 1 ] && run+=(--nv)
  run+=("$GEOMORPH_SIF")
  export APPTAINERENV_TMPDIR=/tmp SINGULARITYENV_TMPDIR=/tmp
else
  run=("$exe")
  export TMPDIR="$scratch/tmp"
fi

echo "geomorph-bids task $task of job $job: sub-$label on ${SLURMD_NODENAME:-$(uname -n)} (cpus $cpus, mem ${mem_gb:-?} GB, gpu $gpu)"
echo "  runtime ${GEOMORPH_SIF:-$exe}; scratch $scratch; log $log"
set +e
"${run[@]}" "${args[@]}" "$@" &
wait $!
rc=$?
set -e
if [ "$rc" = 0 ]; then
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) job ${job}_${task}" > "$status_dir/sub-$label.ok"
  echo "sub-$label: done"
elif [ "$rc" = 3 ]; then
  # everything written, a quality gate flagged it: finished (a rerun gives the same), to be reviewed
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) job ${job}_${task} exit 3 flagged by a quality gate" > "$status_dir/sub-$label.ok"
  echo "sub-$label: done, but FLAGGED by a quality gate (exit 3; the FLAGGED lines above): outputs written, to be reviewed; not resubmitted" >&2
elif [ "$rc" -gt 128 ] && [ "$rc" != 130 ] && [ "$rc" != 143 ] && [ "$rc" != 129 ]; then
  # killed by a signal it could not handle (SIGKILL: the memory limit's OOM killer, or kill -9):
  # geomorph-bids wrote no crash file and no FAILED line; its finished hemispheres are kept
  sig="$(kill -l "$((rc - 128))" 2>/dev/null || echo "$((rc - 128))")"
  why="killed by SIG$sig"
  [ "$sig" != KILL ] || why="$why (out of memory? the job's --mem; or kill -9)"
  printf '%s job %s_%s exit %s %s log %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$job" "$task" "$rc" "$why" "$log" \
    > "$status_dir/sub-$label.failed"
  echo "sub-$label: FAILED (exit $rc: geomorph-bids was $why; no crash file); resubmit with --resubmit-failed" >&2
else
  printf '%s job %s_%s exit %s log %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$job" "$task" "$rc" "$log" \
    > "$status_dir/sub-$label.failed"
  echo "sub-$label: FAILED (exit $rc); the reasons are above (crash files under $output_dir/logs); resubmit with --resubmit-failed" >&2
fi
exit "$rc"
