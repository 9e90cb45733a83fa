#!/usr/bin/env bash
# geomorph-bids on PBS Pro / OpenPBS (and Torque: PBS_ARRAYID): one participant per array task,
# in the Apptainer image (or a native install: GEOMORPH_BIDS). The work itself is
# workflows/slurm_array.sh (its header documents every GEOMORPH_* variable). PBS passes no
# arguments to job scripts: everything goes by environment.
# UNTESTED against a real PBS/Torque: only the task part it calls (slurm_array.sh) has run under
# a real scheduler (SLURM 22.05); check the directives below on your site first.
#   n=$(( $(wc -l < BIDS_DIR/participants.tsv) - 1 ))
#   qsub -J 1-$n -v GEOMORPH_SIF=/path/geomorph-bids.sif,GEOMORPH_WORKFLOWS=$PWD/workflows,\
#   GEOMORPH_BIDS_DIR=/data/bids,GEOMORPH_OUTPUT_DIR=/data/out,GEOMORPH_OPTS="--template fsLR" \
#        workflows/pbs_array.sh
# GPU: -l select=1:ncpus=2:mem=8gb:ngpus=1 and GEOMORPH_GPU=1 (adds --nv and --device cuda).
# Resubmit what did not finish: `bash workflows/slurm_array.sh --list-unfinished BIDS_DIR OUTPUT_DIR`
# writes those labels to a file; qsub again with -J 1-<count> and GEOMORPH_LABELS=<that file>.
#PBS -N geomorph-bids
#PBS -l select=1:ncpus=2:mem=8gb
#PBS -l walltime=00:30:00
#PBS -j oe
set -euo pipefail
cd "${PBS_O_WORKDIR:-.}"
exec bash "${GEOMORPH_WORKFLOWS:?qsub -v GEOMORPH_WORKFLOWS=/path/to/geomorph-bids/workflows}/slurm_array.sh"
