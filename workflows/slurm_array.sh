#!/usr/bin/env bash
# geomorph-bids on a SLURM cluster: one participant per array task, run in the Apptainer image.
#
# Submit every participant (labels from BIDS_DIR/participants.tsv, or GEOMORPH_LABELS=FILE with
# one label per line, "sub-" optional), then resubmit only the ones that did not finish:
#   export GEOMORPH_SIF=/path/to/geomorph-bids.sif
#   bash workflows/slurm_array.sh --submit          BIDS_DIR OUTPUT_DIR [geomorph-bids options]
#   bash workflows/slurm_array.sh --resubmit-failed BIDS_DIR OUTPUT_DIR [geomorph-bids options]
#   bash workflows/slurm_array.sh --dry-run         BIDS_DIR OUTPUT_DIR [...]   # print, submit nothing
#   bash workflows/slurm_array.sh --list-unfinished BIDS_DIR OUTPUT_DIR   # label file for SGE/PBS
# Extra sbatch options go in GEOMORPH_SBATCH_ARGS, e.g. "--partition=gpu --gres=gpu:1 --account=X".
# (Or by hand: sbatch --array=1-N%50 workflows/slurm_array.sh BIDS_DIR OUTPUT_DIR [...].)
#
# Each task
#   - takes the label on line $SLURM_ARRAY_TASK_ID of the label list (SGE_TASK_ID and
#     PBS_ARRAY_INDEX work too: workflows/sge_array.sh and pbs_array.sh call this script);
#   - runs `apptainer run --containall` with BIDS_DIR bound read-only and OUTPUT_DIR and the work
#     folder bound writable, each at the same path as on the host (so every path option works);
#     GEOMORPH_BINDS="SRC[:DST[:ro]],..." adds binds (a FreeSurfer SUBJECTS_DIR elsewhere, say);
#   - adds --nv and --device cuda when it has a GPU: a partition whose name matches
#     GEOMORPH_GPU_PARTITIONS (default "gpu"), or GPUs allocated to the job (--gres/--gpus);
#     GEOMORPH_GPU=0/1 forces it;
#   - works in node-local scratch ($TMPDIR, else /tmp): a Nipype work folder per task, removed
#     afterwards (GEOMORPH_KEEP_WORK=1 keeps it);
#   - gets --nprocs/--omp-nthreads from --cpus-per-task and --mem-gb from --mem;
#   - records OUTPUT_DIR/logs/slurm/sub-<label>.ok on success; --resubmit-failed submits every
#     label without one (failed, timed out, killed for memory or never started).
# Logs: OUTPUT_DIR/logs/slurm/geomorph_<jobid>_<task>.log.
#
#SBATCH --job-name=geomorph-bids
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=00:30:00
#SBATCH --output=geomorph_%A_%a.log
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
bids_dir="$(cd "$bids_dir" && pwd)"
mkdir -p "$output_dir"
output_dir="$(cd "$output_dir" && pwd)"
status_dir="$output_dir/logs/slurm"
mkdir -p "$status_dir"

all_labels() {  # one label per line, no "sub-"
  local file="${GEOMORPH_LABELS:-$bids_dir/participants.tsv}"
  [ -f "$file" ] || { echo "no label list: $file (set GEOMORPH_LABELS)" >&2; return 1; }
  if [[ "$file" == *.tsv ]]; then
    awk -F'\t' 'NR > 1 && $1 != "" { print $1 }' "$file"
  else
    grep -v -E '^[[:space:]]*(#|$)' "$file" | awk '{ print $1 }'
  fi | sed -e 's/^sub-//' -e 's/\r$//'
}

submit() {  # label_file
  local list="$1" n; shift
  n="$(grep -c . "$list" || true)"
  if [ "$n" = 0 ]; then echo "nothing to submit: every label has finished ($status_dir/*.ok)"; return 0; fi
  local cmd=(sbatch --array="1-${n}%${GEOMORPH_ARRAY_LIMIT:-50}" --output="$status_dir/geomorph_%A_%a.log"
             --export="ALL,GEOMORPH_LABELS=$list")
  # shellcheck disable=SC2206
  cmd+=(${GEOMORPH_SBATCH_ARGS:-} "$(readlink -f "$0")" "$bids_dir" "$output_dir" "$@")
  echo "$n participant(s) from $list"
  echo "+ ${cmd[*]}"
  [ "$mode" = dry-run ] || "${cmd[@]}"
}

if [ "$mode" != task ]; then
  stamp="$(date +%Y%m%d-%H%M%S)"
  list="$status_dir/labels-$stamp.txt"
  if [ "$mode" = list ]; then
    all_labels | while read -r label; do
      [ -f "$status_dir/sub-$label.ok" ] || echo "$label"
    done > "$list"
    echo "$(grep -c . "$list" || true) unfinished label(s) in $list (submit with GEOMORPH_LABELS=$list)"
    exit 0
  fi
  : "${GEOMORPH_SIF:?set GEOMORPH_SIF to the geomorph-bids .sif image}"
  [ -f "$GEOMORPH_SIF" ] || { echo "GEOMORPH_SIF: no such file: $GEOMORPH_SIF" >&2; exit 1; }
  if [ "$mode" = resubmit ]; then
    all_labels | while read -r label; do
      [ -f "$status_dir/sub-$label.ok" ] || echo "$label"
    done > "$list"
  else
    all_labels > "$list"
  fi
  submit "$list" "$@"
  exit 0
fi

# ------------------------------------------------------------------------------ one task
task="${SLURM_ARRAY_TASK_ID:-${SGE_TASK_ID:-${PBS_ARRAY_INDEX:-${PBS_ARRAYID:-}}}}"
[ -n "$task" ] || { echo "not an array task (no SLURM_ARRAY_TASK_ID); use --submit" >&2; exit 2; }
: "${GEOMORPH_SIF:?set GEOMORPH_SIF to the geomorph-bids .sif image}"
label="$(all_labels | sed -n "${task}p")"
[ -n "$label" ] || { echo "no label on line $task of the label list" >&2; exit 2; }
rm -f "$status_dir/sub-$label.ok"

apptainer="${GEOMORPH_APPTAINER:-$(command -v apptainer || command -v singularity || true)}"
[ -n "$apptainer" ] || { echo "neither apptainer nor singularity is on PATH (module load apptainer?)" >&2; exit 1; }

cpus="${SLURM_CPUS_PER_TASK:-${NSLOTS:-${NCPUS:-2}}}"
mem_gb=""
if [ -n "${SLURM_MEM_PER_NODE:-}" ]; then mem_gb=$(( SLURM_MEM_PER_NODE / 1024 ))
elif [ -n "${SLURM_MEM_PER_CPU:-}" ]; then mem_gb=$(( SLURM_MEM_PER_CPU * cpus / 1024 )); fi

gpu="${GEOMORPH_GPU:-auto}"
if [ "$gpu" = auto ]; then
  gpu=0
  if [[ "${SLURM_JOB_PARTITION:-}" =~ ${GEOMORPH_GPU_PARTITIONS:-gpu} ]] \
     || [ -n "${SLURM_JOB_GPUS:-}${SLURM_GPUS_ON_NODE:-}${SLURM_STEP_GPUS:-}" ]; then
    gpu=1
  fi
fi

scratch="${TMPDIR:-/tmp}/geomorph-${SLURM_JOB_ID:-${JOB_ID:-${PBS_JOBID:-$$}}}-${task}"
mkdir -p "$scratch/work" "$scratch/tmp"
cleanup() { [ "${GEOMORPH_KEEP_WORK:-0}" = 1 ] || rm -rf "$scratch"; }
trap cleanup EXIT

binds=("-B" "$bids_dir:$bids_dir:ro" "-B" "$output_dir:$output_dir" "-B" "$scratch/work:$scratch/work"
       "-B" "$scratch/tmp:/tmp")
IFS=',' read -r -a extra <<< "${GEOMORPH_BINDS:-}"
for b in "${extra[@]}"; do [ -n "$b" ] && binds+=("-B" "$b"); done

app_opts=(--containall)
args=("$bids_dir" "$output_dir" participant --participant-label "$label" -w "$scratch/work"
      --nprocs "$cpus" --omp-nthreads "$cpus")
[ -z "$mem_gb" ] || args+=(--mem-gb "$mem_gb")
if [ "$gpu" = 1 ]; then
  app_opts+=(--nv)
  args+=(--device cuda)
fi

echo "geomorph-bids task $task: sub-$label on $(hostname) (cpus $cpus, mem ${mem_gb:-?} GB, gpu $gpu), work $scratch"
set +e
APPTAINERENV_TMPDIR=/tmp SINGULARITYENV_TMPDIR=/tmp \
  "$apptainer" run "${app_opts[@]}" "${binds[@]}" "$GEOMORPH_SIF" "${args[@]}" "$@"
rc=$?
set -e
if [ "$rc" = 0 ]; then
  date -u +%Y-%m-%dT%H:%M:%SZ > "$status_dir/sub-$label.ok"
  echo "sub-$label: done"
else
  echo "sub-$label: FAILED (exit $rc); crash files under $output_dir/logs; resubmit with --resubmit-failed" >&2
fi
exit "$rc"
