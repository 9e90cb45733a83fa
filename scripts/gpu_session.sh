#!/usr/bin/env bash
# One prepared session on a lent GPU (shared/GPU.md): CUDA checks, speed, and training of the
# bundled networks, all inside one command of under 10 minutes. Run from the repository root:
#
#   GEOMORPH_REHEARSE=1 bash scripts/gpu_session.sh /tmp/rehearse   # here first, on the CPU, tiny sizes
#   bash scripts/gpu_session.sh OUT_DIR                              # on the GPU machine (OUT_DIR = $OUT)
#
# With the device tool: run(command="bash scripts/gpu_session.sh $OUT", carry=[".gpu", ".whl"],
# timeout_s=600). Both folders are git-ignored, so they travel only when carried:
#   .gpu/sources.npz  the source bank: scripts/build_training_sources.py --out .gpu/sources.npz
#   .whl/             wheels of what the device image lacks (device README, "Notes"): for Python 3.12,
#                     those of scripts/device_wheels.txt (13 MB)
# scripts/gpu_prepare.sh builds both, checks them and runs the rehearsal below with the device
# image's packages only (scripts/device_site.py): the one command to run before a device call.
# The rehearsal ends with READY or NOT READY and the list of what would fail there (a missing
# wheel or bank, more than 8 files back or one over 16 MiB, a tree over 64 MiB, a failed step).
# Before any work the session stops on one line (exit 3) without the bank, a module, or CUDA.
#
# Trains three networks at once on the one GPU (their small kernels leave it mostly idle), for
# GEOMORPH_TRAIN_MINUTES each (default 3.5): sulc -> fsaverage, sulc -> fsLR, sulc + curv + myelin -> fsLR.
# Everything ends by GEOMORPH_DEADLINE_S seconds after the start (default 480: GPU.md's 8 minutes,
# inside the tool's 600 s): the trainers are stopped in time for their weights to be packed, then the speed checks
# (issue 12: device_checks.py speed) get what is left but 100 s, which go to geomorph-bids' batch mode
# end to end on 64 hemispheres of 163,842 vertices (issue 18; e2e.md in checks.tgz). To continue training from weights brought back earlier, unpack each
# <name>.tgz into .gpu/init/<name>/ (it is carried with .gpu) and set GEOMORPH_INIT_DIR=.gpu/init
# (geomorph-train --init).
# Writes to OUT_DIR (at most 8 files, none over 16 MiB): <name>.tgz (model.pt in bf16,
# train_log.csv, model_card.md, log.txt; in 15 MB parts <name>.tgz.part0, part1 if over 16 MB) per network, checks.tgz (checks/: correctness.md/.json,
# speed.md/.json, e2e.md, the pytest and geomorph-bids logs) and session.log: 5 files, no folder.
set -uo pipefail
out="${1:?usage: gpu_session.sh OUT_DIR}"
mkdir -p "$out"
exec > >(tee -a "$out/session.log") 2>&1
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }
fail() { echo "gpu_session: $*"; exit 3; }  # before any work: one line, nothing spent
problems=()
problem() { problems+=("$*"); stamp "PROBLEM: $*"; }

export PYTHONUNBUFFERED=1 NIPYPE_NO_ET=1
py="${GEOMORPH_PYTHON:-python3}"
rehearse="${GEOMORPH_REHEARSE:-0}"
sources="${GEOMORPH_SOURCES:-.gpu/sources.npz}"
minutes="${GEOMORPH_TRAIN_MINUTES:-3.5}"
cohort_n=32          # the end-to-end cohort: 32 subjects = 64 hemispheres of 163,842 vertices (issue 18)
e2e_reserve=100      # seconds kept for it after the speed checks
deadline_s="${GEOMORPH_DEADLINE_S:-480}"
if [ "$rehearse" = 1 ]; then
  dev=cpu; minutes="${GEOMORPH_TRAIN_MINUTES:-0.3}"; deadline_s="${GEOMORPH_DEADLINE_S:-2400}"
  slack=4  # the steps' time limits: a shared CPU takes minutes where the GPU takes seconds
  # the device's network options at tiny sizes, bf16 included (CPU autocast)
  net_args=(--channels tiny --no-label-block --correlation --control-level 2 --labels 20 --label-level 6
            --crf-iterations 2 --batch-size 2 --pairs-per-epoch 4 --val-pairs 4 --threads 1 --bf16)
  check_args=(--rehearse --repeats 1)
  cohort_n=2; train_threads=1  # and the checks' subjects at 40,962 vertices (device_checks.py --rehearse)
else
  dev=cuda; slack=1
  net_args=(--channels default --no-label-block --correlation --control-level 4 --labels 600 --label-level 6 --crf-iterations 5
            --batch-size 8 --pairs-per-epoch 800 --val-pairs 64 --bf16)
  check_args=(--repeats 3); train_threads=4
fi
# the CUDA tests (marked cuda: skipped on CPU machines, tests/conftest.py), and the GPU-side code in full
cuda_tests=(tests/model/test_geomorph.py tests/model/test_ico_locate.py tests/model/test_stage_loss.py
            tests/engine/test_register.py tests/engine/test_pairgen.py)
full_tests=(tests/model/test_ico_locate.py tests/engine/test_pairgen.py)

# --- before any work: the bank, the modules, CUDA (seconds, not a device's minutes) ------------
[ -f "$sources" ] || fail "no source bank $sources: build it with scripts/build_training_sources.py --out .gpu/sources.npz and carry .gpu"
if [ "$rehearse" != 1 ]; then
  $py -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || fail "torch $($py -c 'import torch; print(torch.__version__)' 2>/dev/null) sees no CUDA GPU (CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}): this session is for a lent GPU; rehearse it on a CPU with GEOMORPH_REHEARSE=1"
fi
if [ "$rehearse" != 1 ] && ls .whl/*.whl >/dev/null 2>&1; then  # the rehearsal checks them below
  err=$($py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1) \
    || fail "cannot install the wheels of .whl: $(echo "$err" | grep -m1 ERROR)"
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
missing=$($py - <<'EOF'
import importlib
bad = []
for name in ("numpy", "scipy", "torch", "nibabel", "nipype", "pytest", "geomorph_bids.engine.register",
             "geomorph_bids.cli.train", "geomorph_bids.cli.bids", "geomorph_bids.workflows.base"):
    try:
        importlib.import_module(name)
    except Exception as e:  # noqa: BLE001
        bad.append(f"{name} ({type(e).__name__}: {e})")
print("; ".join(bad))
EOF
) || missing="python ($py) did not run"
[ -z "$missing" ] || fail "cannot import $missing: add them to scripts/device_wheels.txt and run scripts/gpu_prepare.sh"
runs=$(mktemp -d "${TMPDIR:-/tmp}/geomorph_runs.XXXXXX")
checks="$runs/checks"  # packed into $out/checks.tgz: loose files there would pass the 8 that come back
mkdir -p "$checks"
left() { echo $(( deadline_s - ($(date +%s) - start) )); }  # seconds left before the deadline
step() {  # SECONDS WHAT COMMAND...: at most SECONDS (x slack), and never into the last 90 s (packing)
  local want=$(( $1 * slack )) room=$(( $(left) - 90 )) what=$2; shift 2
  [ "$room" -ge 10 ] || { problem "$what: skipped, no time left before the deadline"; return 99; }
  timeout $(( want < room ? want : room )) "$@"
}
stamp "device: $($py -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")'); torch $($py -c 'import torch; print(torch.__version__)'); deadline ${deadline_s} s"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv 2>/dev/null || true

# --- training: three networks at once, in the background -------------------------------------
# each stops itself after $minutes (--max-minutes) and then validates and writes; the timeout is
# the last resort, set so that packing (80 s) and the shortest speed check (60 s) still fit
train_limit=$(awk -v m="$minutes" -v k="$slack" 'BEGIN { printf "%d", m * 60 + 150 * k }')
[ "$train_limit" -le $(( $(left) - 140 )) ] || train_limit=$(( $(left) - 140 ))
[ "$train_limit" -ge 30 ] || fail "GEOMORPH_TRAIN_MINUTES=$minutes does not fit GEOMORPH_DEADLINE_S=$deadline_s"
train() {  # name template seed extra-args...
  local name=$1 template=$2 seed=$3; shift 3
  local init=()
  if [ -n "${GEOMORPH_INIT_DIR:-}" ] && [ -f "$GEOMORPH_INIT_DIR/$name/model.pt" ]; then
    init=(--init "$GEOMORPH_INIT_DIR/$name/model.pt")
  fi
  OMP_NUM_THREADS=$train_threads timeout "$train_limit" $py -m geomorph_bids.cli.train \
    --out "$runs/$name" --name "$name" --template "$template" --mirror-right --sources "$sources" \
    --device "$dev" --seed "$seed" --epochs 10000 --patience 0 --lr 5e-4 --lr-schedule cosine --warmup 150 \
    --supervised 1 --lam 10 --fold 10 --max-minutes "$minutes" --save-bf16 "${net_args[@]}" "${init[@]}" "$@" \
    > "$runs/$name.log" 2>&1
  echo "exit $?" >> "$runs/$name.log"
}
names=(sulc-fsaverage sulc-fsLR multimodal-fsLR)
stamp "training 3 networks for $minutes min each on $dev (stopped after $train_limit s at the latest)"
train sulc-fsaverage fsaverage 11 --features sulc --holdout fsavg5_Rm &
p1=$!
train sulc-fsLR fsLR 12 --features sulc --holdout fsavg5_Rm &
p2=$!
train multimodal-fsLR fsLR 13 --features sulc curv myelin &
p3=$!

pack_checks() { tar -C "$runs" -czf "$out/checks.tgz" checks; }

# the end-to-end cohort's files (CPU work, while the networks train): timed after the speed checks
OMP_NUM_THREADS=2 $py scripts/device_checks.py cohort --out "$runs/cohort" --subjects "$cohort_n" "${check_args[@]}" \
  > "$checks/cohort.log" 2>&1 &
pc=$!

# --- correctness, while the networks train ----------------------------------------------------
stamp "CUDA tests"
if [ "$rehearse" = 1 ]; then  # here they skip: check that they are collected and selected
  step 120 "pytest -m cuda" $py -m pytest -q -p no:cacheprovider -rs -m cuda "${cuda_tests[@]}" > "$checks/pytest-cuda.log" 2>&1
  rc=$?
  n=$(grep -c "needs a CUDA device" "$checks/pytest-cuda.log")
  [ "$rc" = 0 ] && [ "$n" -ge 1 ] || problem "pytest -m cuda: exit $rc, $n CUDA tests selected (pytest-cuda.log in checks.tgz)"
  step 60 "pytest --collect-only" $py -m pytest -q -p no:cacheprovider --collect-only -m "not slow and not cuda" "${full_tests[@]}" \
    > "$checks/pytest.log" 2>&1 || problem "pytest cannot collect ${full_tests[*]}"
else
  step 100 "CUDA tests" $py -m pytest -q -p no:cacheprovider -rs -m cuda "${cuda_tests[@]}" > "$checks/pytest-cuda.log" 2>&1
  rc=$?; [ "$rc" = 0 ] || problem "CUDA tests: exit $rc"
  stamp "CUDA tests exit $rc: $(tail -1 "$checks/pytest-cuda.log")"
  step 100 "GPU-side tests" $py -m pytest -q -p no:cacheprovider -m "not slow and not cuda" "${full_tests[@]}" > "$checks/pytest.log" 2>&1
  rc=$?; [ "$rc" = 0 ] || problem "GPU-side tests: exit $rc"
fi
stamp "pytest: $(tail -1 "$checks/pytest.log")"
stamp "correctness checks"
step 200 "correctness checks" $py scripts/device_checks.py correctness --out "$checks" "${check_args[@]}"
rc=$?; [ "$rc" = 0 ] || problem "correctness checks: exit $rc"
pack_checks

# --- the BIDS-App on the device: the workflow (Nipype's MultiProc forks its workers after the main
# process has resolved --device: CUDA must not be initialised there) and batch mode (forkserver)
for mode in workflow batch; do
  extra=(); [ "$mode" = batch ] && extra=(--batch-size 4)
  stamp "geomorph-bids ($mode) on $dev"
  step 150 "geomorph-bids ($mode)" $py -m geomorph_bids.cli.bids examples/ds-geomorph-example "$runs/bids-$mode" participant \
    --template fsaverage --device "$dev" --nprocs 2 -w "$runs/work-$mode" "${extra[@]}" > "$checks/bids-$mode.log" 2>&1
  rc=$?
  n=$(grep -rhoE "\"device\": *\"$dev(:[0-9]+)?\"" "$runs/bids-$mode" 2>/dev/null | wc -l)
  stamp "geomorph-bids ($mode): exit $rc, $n of 4 hemispheres registered on $dev"
  [ "$rc" = 0 ] && [ "$n" = 4 ] || problem "geomorph-bids ($mode) on $dev: exit $rc, $n of 4 hemispheres there (bids-$mode.log in checks.tgz)"
done
pack_checks

wait $p1 $p2 $p3
for n in "${names[@]}"; do
  stamp "$n: $(grep -E '^epoch|^\| |^best|exit|rror' "$runs/$n.log" | tail -8)"
  grep -q "^exit 0$" "$runs/$n.log" || problem "training $n: $(tail -1 "$runs/$n.log") (its log: $n.tgz)"
done

# --- bring back the networks first: a run cut short keeps them ---------------------------------
for n in "${names[@]}"; do
  cp "$runs/$n.log" "$runs/$n/log.txt" 2>/dev/null
  # a trainer stopped by its timeout left float32 weights (18.5 MB for the paper's network): bf16
  [ -f "$runs/$n/model.pt" ] && $py -c "import sys; from geomorph_bids.model.checkpoint import convert_checkpoint; convert_checkpoint(sys.argv[1])" "$runs/$n/model.pt"
  # what there is: a trainer stopped by its timeout wrote no model_card.md, and its weights must come back all the same
  have=(); for f in model.pt train_log.csv model_card.md log.txt; do [ -f "$runs/$n/$f" ] && have+=("$f"); done
  if [ "${#have[@]}" -gt 0 ]; then tar -C "$runs/$n" -czf "$out/$n.tgz" "${have[@]}"; else tar -C "$runs" -czf "$out/$n.tgz" "$n.log"; fi
  [ -f "$runs/$n/model.pt" ] || problem "training $n wrote no model.pt (its log: $n.tgz)"
  # a file over 16 MiB would not come back: parts of 15 MiB (cat $n.tgz.part* > $n.tgz); 3 x 2 parts + 2 fit the 8
  if [ "$(stat -c %s "$out/$n.tgz")" -gt 16000000 ]; then
    split -b 15000000 -d -a 1 "$out/$n.tgz" "$out/$n.tgz.part" && rm "$out/$n.tgz"
    stamp "$n.tgz over 16 MB: brought back as $(ls "$out" | grep -c "^$n.tgz.part") parts ($n.tgz.part*)"
  fi
done

# --- speed, with the trained sulc -> fsaverage network, in the time left ------------------------
model_arg=()
[ -f "$runs/sulc-fsaverage/model.pt" ] && model_arg=(--model "$runs/sulc-fsaverage/model.pt")
budget=$(( $(left) - 20 - e2e_reserve ))
if [ "$budget" -ge 30 ]; then
  stamp "speed checks ($budget s)"
  timeout "$budget" $py scripts/device_checks.py speed --out "$checks" "${check_args[@]}" "${model_arg[@]}"
  rc=$?; [ "$rc" = 0 ] || problem "speed checks: exit $rc (the rows measured are in speed.md)"
else
  problem "no time left for the speed checks ($budget s)"
fi
pack_checks

# --- end to end: geomorph-bids batch mode on 64 hemispheres of 163,842 vertices (issue 18) -------
# one chunk of 64 (one register_many on the device), then 8 workers with chunks of 8 if time is left;
# wall time launch to exit, reports deferred (built later by --reports-only, not timed here)
wait $pc || problem "building the end-to-end cohort failed (cohort.log in checks.tgz)"
n_hemi=$(( 2 * cohort_n ))
vertices=163,842; [ "$rehearse" = 1 ] && vertices=40,962
echo "| geomorph-bids batch mode, $n_hemi hemispheres of $vertices vertices on $dev | wall (s) | hemispheres / s | registered on $dev |" > "$checks/e2e.md"
echo "|---|---|---|---|" >> "$checks/e2e.md"
for plan in "64 4" "8 8"; do
  set -- $plan
  [ -f "$runs/cohort/dataset_description.json" ] || break
  if [ "$1" = 8 ] && [ $(( $(left) - 90 )) -lt 60 ]; then stamp "end to end --batch-size 8: no time left (optional)"; break; fi
  stamp "end to end: $n_hemi hemispheres, --batch-size $1 --nprocs $2, on $dev"
  t0=$(date +%s.%N)
  step 90 "end to end (--batch-size $1)" $py -m geomorph_bids.cli.bids "$runs/cohort" "$runs/e2e-$1" participant \
    --template fsaverage --device "$dev" --batch-size "$1" --nprocs "$2" --reports deferred -w "$runs/work-e2e-$1" \
    > "$checks/e2e-$1.log" 2>&1
  rc=$?
  [ "$rc" = 99 ] && break
  wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  n=$(grep -rhoE "\"device\": *\"$dev(:[0-9]+)?\"" "$runs/e2e-$1" 2>/dev/null | wc -l)
  rate=$(awk -v n="$n" -v w="$wall" 'BEGIN { printf "%.2f", n / w }')
  echo "| --batch-size $1 --nprocs $2 --reports deferred (exit $rc) | $wall | $rate | $n of $n_hemi |" >> "$checks/e2e.md"
  stamp "end to end --batch-size $1: exit $rc, $n of $n_hemi hemispheres on $dev in $wall s ($rate / s)"
  [ "$rc" = 0 ] && [ "$n" = "$n_hemi" ] || problem "end to end --batch-size $1: exit $rc, $n of $n_hemi hemispheres (e2e-$1.log in checks.tgz)"
  rm -rf "$runs/e2e-$1" "$runs/work-e2e-$1"
done
pack_checks

# --- what comes back: at most 8 files, 16 MiB each, 64 MiB together (device README, Limits) -----
n_files=$(find "$out" -type f | wc -l)
[ "$n_files" -le 8 ] || problem "$n_files files in $out: only 8 come back"
while IFS= read -r f; do
  problem "$f is over 16 MiB: it would not come back"
done < <(find "$out" -type f -size +16777215c)
total=$(find "$out" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
[ "$total" -le 67108864 ] || problem "$out holds $total bytes: only 64 MiB come back"
if [ "$rehearse" = 1 ]; then
  # what the device run needs that this CPU machine does not show
  for w in $(grep -v '^#' scripts/device_wheels.txt | sed 's/==.*//' | tr 'A-Z-' 'a-z_'); do
    found=0
    for f in .whl/"$w"-*.whl; do
      case "$f" in *-py3-none-any.whl|*-py2.py3-none-any.whl|*-cp312-*.whl) found=1 ;; esac
    done
    [ "$found" = 1 ] || problem "no $w wheel (Python 3.12) in .whl: run scripts/gpu_prepare.sh"
  done
  size=$( { git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null; \
            find .gpu .whl -type f -printf '%s\n' 2>/dev/null; } | awk '{ s += $1 } END { print s + 0 }')
  [ "$size" -le 67108864 ] || problem "the tree with .gpu and .whl is $size bytes: over the 64 MiB that travel"
  bf16=$($py - <<'EOF'
import io
import torch
from geomorph_bids.cli.train import build_model_config
from geomorph_bids.model.geomorph import GeoMorph
cfg = build_model_config("default", 3, 6, (4,), (600,), 6, 5, label_block=False, correlation=True)
state = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in GeoMorph(cfg).state_dict().items()}
buf = io.BytesIO()
torch.save(state, buf)
print(len(buf.getvalue()))
EOF
)
  [ -n "$bf16" ] && [ "$bf16" -le 16000000 ] \
    || problem "the device's network in bf16 is ${bf16:-?} bytes: its .tgz would not come back under 16 MiB"
fi
rm -rf "$runs"
ls -la "$out"
if [ "${#problems[@]}" -eq 0 ]; then
  stamp "done$([ "$rehearse" = 1 ] && echo ': READY for the device')"
else
  stamp "done with ${#problems[@]} problem(s)$([ "$rehearse" = 1 ] && echo ': NOT READY for the device'):"
  printf '  - %s\n' "${problems[@]}"
  exit 1
fi
