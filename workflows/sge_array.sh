#!/usr/bin/env bash
# geomorph-bids on SGE / Grid Engine: one participant per array task, in the Apptainer image
# (or a native install: GEOMORPH_BIDS).
# UNTESTED against a real Grid Engine: only the task part it calls (slurm_array.sh) has run
# under a real scheduler (SLURM 22.05); check the directives below on your site first.
# The work itself is workflows/slurm_array.sh (its header documents every GEOMORPH_* variable);
# this file only carries SGE's directives. SGE copies job scripts to a spool folder, so say
# where the workflows folder is:
#   n=$(( $(wc -l < BIDS_DIR/participants.tsv) - 1 ))
#   qsub -t 1-$n -tc 50 -v GEOMORPH_SIF=/path/geomorph-bids.sif,GEOMORPH_WORKFLOWS=$PWD/workflows \
#        workflows/sge_array.sh BIDS_DIR OUTPUT_DIR [geomorph-bids options]
# GPU: add the site's GPU request (e.g. -l gpu=1) and -v GEOMORPH_GPU=1 (adds --nv, --device cuda).
# Resubmit what did not finish (no OUTPUT_DIR/logs/slurm/sub-<label>.ok):
#   bash workflows/slurm_array.sh --list-unfinished BIDS_DIR OUTPUT_DIR   # prints FILE and its count n
#   qsub -t 1-$n -v GEOMORPH_LABELS=FILE,GEOMORPH_SIF=...,GEOMORPH_WORKFLOWS=... workflows/sge_array.sh ...
#$ -N geomorph-bids
#$ -cwd
#$ -j y
#$ -pe smp 2
#$ -l h_vmem=4G
#$ -l h_rt=00:30:00
set -euo pipefail
exec bash "${GEOMORPH_WORKFLOWS:?qsub -v GEOMORPH_WORKFLOWS=/path/to/geomorph-bids/workflows}/slurm_array.sh" "$@"
