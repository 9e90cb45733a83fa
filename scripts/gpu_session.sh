#!/usr/bin/env bash
# One prepared session on a lent GPU (shared/GPU.md): CUDA checks, speed, and training of the
# bundled networks, all inside one command of under 10 minutes. Run from the repository root:
#
#   bash scripts/gpu_session.sh OUT_DIR            # on the GPU machine (OUT_DIR = $OUT there)
#   GEOMORPH_REHEARSE=1 bash scripts/gpu_session.sh /tmp/rehearse   # here, on the CPU, tiny sizes
#
# Needs: the source bank .gpu/sources.npz (scripts/build_training_sources.py; not in git) and,
# where nibabel is not installed, its wheel in .whl/ (both carried to the device).
# Trains three networks at once on the one GPU (their small kernels leave it mostly idle), for
# GEOMORPH_TRAIN_MINUTES each: sulc -> fsaverage, sulc -> fsLR, sulc + curv + myelin -> fsLR.
# To continue training from weights brought back earlier, set GEOMORPH_INIT_DIR to a folder
# holding <name>/model.pt for each name (geomorph-train --init).
# Writes to OUT_DIR: <name>.tgz (model.pt in bf16, train_log.csv, model_card.md, log) per
# network, checks.tgz (correctness/speed tables and JSON, the pytest log) and session.log.
set -uo pipefail
out="${1:?usage: gpu_session.sh OUT_DIR}"
mkdir -p "$out"
exec > >(tee -a "$out/session.log") 2>&1
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }

export PYTHONUNBUFFERED=1 NIPYPE_NO_ET=1
if ! python3 -c "import nibabel" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
py="${GEOMORPH_PYTHON:-python3}"
rehearse="${GEOMORPH_REHEARSE:-0}"
minutes="${GEOMORPH_TRAIN_MINUTES:-5.5}"
runs=/tmp/geomorph_runs
rm -rf "$runs" && mkdir -p "$runs" "$out/checks"
if [ "$rehearse" = 1 ]; then
  dev=cpu; minutes="${GEOMORPH_TRAIN_MINUTES:-0.3}"
  net_args=(--channels tiny --control-level 2 --labels 20 --label-level 6 --batch-size 2 --pairs-per-epoch 4 --val-pairs 4 --threads 1)
  check_args=(--rehearse --repeats 1)
else
  dev=cuda
  net_args=(--channels default --no-label-block --correlation --control-level 4 --labels 600 --label-level 6 --crf-iterations 5
            --batch-size 8 --pairs-per-epoch 800 --val-pairs 64 --bf16)
  check_args=(--repeats 3)
fi
stamp "device: $($py -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")'); torch $($py -c 'import torch; print(torch.__version__)')"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv 2>/dev/null || true

# --- training: three networks at once, in the background -------------------------------------
train() {  # name template seed features... -- extra args
  local name=$1 template=$2 seed=$3; shift 3
  local init=()
  if [ -n "${GEOMORPH_INIT_DIR:-}" ] && [ -f "$GEOMORPH_INIT_DIR/$name/model.pt" ]; then
    init=(--init "$GEOMORPH_INIT_DIR/$name/model.pt")
  fi
  OMP_NUM_THREADS=4 timeout $(( ${minutes%.*} * 60 + 150 )) $py -m geomorph_bids.cli.train \
    --out "$runs/$name" --name "$name" --template "$template" --mirror-right --sources .gpu/sources.npz \
    --device "$dev" --seed "$seed" --epochs 10000 --patience 0 --lr 5e-4 --lr-schedule cosine --warmup 150 \
    --supervised 1 --lam 10 --fold 10 --max-minutes "$minutes" --save-bf16 "${net_args[@]}" "${init[@]}" "$@" \
    > "$runs/$name.log" 2>&1
  echo "exit $?" >> "$runs/$name.log"
}
stamp "training 3 networks for $minutes min each on $dev"
train sulc-fsaverage fsaverage 11 --features sulc --holdout fsavg5_Rm &
p1=$!
train sulc-fsLR fsLR 12 --features sulc --holdout fsavg5_Rm &
p2=$!
train multimodal-fsLR fsLR 13 --features sulc curv myelin &
p3=$!

# --- correctness, while the networks train ----------------------------------------------------
stamp "CUDA tests"
# the tests that need CUDA (skipped on CPU machines), and the new GPU-side code in full
timeout 150 $py -m pytest -q -p no:cacheprovider --continue-on-collection-errors -m "not slow" \
  tests/model/test_ico_locate.py tests/engine/test_pairgen.py \
  tests/model/test_geomorph.py::test_cuda_matches_cpu tests/engine/test_register.py::test_cuda_registration_matches_cpu \
  > "$out/checks/pytest.log" 2>&1
stamp "pytest exit $?: $(tail -1 "$out/checks/pytest.log")"
stamp "correctness checks"
timeout 200 $py scripts/device_checks.py correctness --out "$out/checks" "${check_args[@]}"
stamp "correctness exit $?"

wait $p1 $p2 $p3
for n in sulc-fsaverage sulc-fsLR multimodal-fsLR; do
  stamp "$n: $(grep -E '^epoch|^\| |^best|exit|rror' "$runs/$n.log" | tail -8)"
done

# --- speed, with the trained sulc -> fsaverage network ----------------------------------------
model_arg=()
[ -f "$runs/sulc-fsaverage/model.pt" ] && model_arg=(--model "$runs/sulc-fsaverage/model.pt")
stamp "speed checks"
timeout 150 $py scripts/device_checks.py speed --out "$out/checks" "${check_args[@]}" "${model_arg[@]}"
stamp "speed exit $?"

# --- bring back ---------------------------------------------------------------------------------
for n in sulc-fsaverage sulc-fsLR multimodal-fsLR; do
  cp "$runs/$n.log" "$runs/$n/log.txt" 2>/dev/null
  tar -C "$runs/$n" -czf "$out/$n.tgz" model.pt train_log.csv model_card.md log.txt 2>/dev/null \
    || tar -C "$runs" -czf "$out/$n.tgz" "$n.log"
done
tar -C "$out" -czf "$out/checks.tgz" checks && rm -rf "$out/checks"
ls -la "$out"
stamp "done"
