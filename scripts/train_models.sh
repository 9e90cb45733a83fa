#!/usr/bin/env bash
# Rebuild the pretrained models shipped in geomorph_bids/data/models/ with geomorph-train,
# exactly as they were made (2 CPU cores shared by the three runs; no GPU).
#   bash scripts/train_models.sh [OUT_DIR]     # default OUT_DIR: ./trained_models
# docs/models.md says why each run is there. Each command is also recorded in the model's
# checkpoint and model_card.md. On a GPU add
# --device cuda and drop --threads. To ship a result, copy model.pt, model_card.md and
# train_log.csv into geomorph_bids/data/models/<name>/ and refresh the card's evaluation
# section with benchmarks/accuracy.py and benchmarks/peers.py (docs/models.md).
# The multimodal model needs the fsLR myelin/curv templates: bash scripts/install.sh --multimodal
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-trained_models}"
train="$here/.venv/bin/geomorph-train"

# sulc-fsaverage (2026-12-04): pairs generated from a bank of real maps (built here, never
# committed), a correlation head, ico-4 control grid; 110 min on one CPU thread, then three
# fine-tunings (docs/models.md).
bank="$here/.gpu/sources.npz"
[ -f "$bank" ] || "$here/.venv/bin/python" "$here/scripts/build_training_sources.py" --out "$bank"
# The recipe every sulc network shares; first runs start from random weights (lr 1e-3, 200 warm-up
# steps), fine-tunings from the first run's weights (lr 4e-4, 50 warm-up steps, a new seed).
# --features and --holdout are given per command, never in the recipe: a list option given twice keeps
# every value (geomorph-train --features sulc ... --features sulc curv myelin is sulc sulc curv myelin).
recipe=(--mirror-right --sources "$bank" --data-level 5 --channels small
        --control-level 4 --labels 100 --label-level 5 --crf-iterations 2 --no-label-block --correlation
        --batch-size 4 --pairs-per-epoch 200 --val-pairs 32 --epochs 100000 --patience 0 --lr-schedule cosine
        --supervised 1 --lam 10 --fold 10 --threads 1 --device cpu)
sulc=(--features sulc --holdout fsavg5_Rm)
first=(--lr 1e-3 --warmup 200)
finetune=(--lr 4e-4 --warmup 50)
"$train" --out "$out/sulc-fsaverage" --name sulc-fsaverage --template fsaverage "${recipe[@]}" "${sulc[@]}" "${first[@]}" \
    --max-minutes 110 --seed 31
# ... then fine-tuned (2026-12-05): 105 more minutes
"$train" --out "$out/sulc-fsaverage-ft" --name sulc-fsaverage --template fsaverage "${recipe[@]}" "${sulc[@]}" "${finetune[@]}" \
    --max-minutes 105 --seed 33 --init "$out/sulc-fsaverage/model.pt"
# ... and again (2026-12-05, third session), the loss on the low-passed warp register() uses:
# 85 more minutes
"$train" --out "$out/sulc-fsaverage-sm" --name sulc-fsaverage --template fsaverage "${recipe[@]}" "${sulc[@]}" "${finetune[@]}" \
    --train-smoothed --max-minutes 85 --seed 36 --init "$out/sulc-fsaverage-ft/model.pt"
# ... and again (2026-12-05, fifth session) on larger warps, as far from a template as an individual's
# sphere is: 75 more minutes at lr 2e-4 (the shipped sulc-fsaverage); registering in three forward
# passes (2026-12-06, docs/models.md "Three forward passes": the shipped checkpoint is these weights
# with config["inference"]["passes"] = [2, 4, 8])
"$train" --out "$out/sulc-fsaverage-lw" --name sulc-fsaverage --template fsaverage "${recipe[@]}" "${sulc[@]}" --lr 2e-4 --warmup 50 \
    --train-smoothed --warp-deg 6 16 --small-warp-fraction 0.35 --max-minutes 75 --seed 51 \
    --init "$out/sulc-fsaverage-sm/model.pt" --passes 2 4 8
# sulc-fsLR (2026-12-04): the same recipe for fsLR, 40 minutes
"$train" --out "$out/sulc-fsLR" --name sulc-fsLR --template fsLR "${recipe[@]}" "${sulc[@]}" "${first[@]}" \
    --max-minutes 40 --seed 32
# ... then fine-tuned (2026-12-05): 70 more minutes (multimodal-fsLR below starts from this one)
"$train" --out "$out/sulc-fsLR-ft" --name sulc-fsLR --template fsLR "${recipe[@]}" "${sulc[@]}" "${finetune[@]}" \
    --max-minutes 70 --seed 35 --init "$out/sulc-fsLR/model.pt"
# ... and again (2026-12-05, fourth session): 85 more minutes at lr 1.5e-4 (the shipped sulc-fsLR)
"$train" --out "$out/sulc-fsLR-ft3" --name sulc-fsLR --template fsLR "${recipe[@]}" "${sulc[@]}" --lr 1.5e-4 --warmup 50 \
    --max-minutes 85 --seed 41 --init "$out/sulc-fsLR-ft/model.pt"

# multimodal-fsLR (2026-12-05): sulc-fsLR as shipped then (the 70-minute run) widened to sulc + curv + myelin (new channels
# start at zero) and fine-tuned for 50 minutes on the S1200 left hemisphere (the only source with
# myelin; its right one held out). Needs the fsLR myelin/curv templates (--multimodal install).
"$train" --out "$out/multimodal-fsLR" --name multimodal-fsLR --template fsLR "${recipe[@]}" "${finetune[@]}" \
    --features sulc curv myelin --holdout s1200_Rm --train-smoothed --max-minutes 50 --seed 38 \
    --init "$out/sulc-fsLR-ft/model.pt"
