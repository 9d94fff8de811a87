#!/usr/bin/env bash
# Leave-one-volume-out evaluation on the real isotropic mice of ../shared/data, as published in
# the README and the model card. Resumable: rerun to finish (each OUT_DIR keeps its rows).
#   scripts/evaluate_real.sh [OUT_ROOT] [DATA_DIR]
# 1. the slice-profile grid (simulation profile x forward-model profile), cubic vs dccubic;
# 2. BiDA (shipped priors) on the held-out RMINC mouse beside dccubic (16 or 4 steps; 1 or 4
#    samples).
# The DSURQE mouse trained the shipped priors: BiDA is not scored on it (leave-one-out guard).
set -euo pipefail
OUT=${1:-eval-real}
DATA=${2:-../shared/data}
RMINC="$DATA/mouse_rminc-120um_T2w.nii.gz"
DSURQE="$DATA/mouse_dsurqe-200um_T2w.nii.gz"
for sim in slr gaussian; do
  for a in gaussian slr; do
    bida evaluate "$RMINC" "$DSURQE" "$OUT/${sim}-sim_${a}-A" --methods cubic dccubic \
      --profile "$sim" --recon-profile "$a" --no-cdsc --device cpu --no-progress
  done
done
for sim in slr gaussian; do
  for setting in "16 1" "4 1" "4 4"; do  # steps, posterior samples
    set -- $setting
    bida evaluate "$RMINC" "$OUT/bida_${sim}-sim_s$1_k$2" --methods dccubic bida --profile "$sim" \
      --steps "$1" --n-samples "$2" --no-cdsc --device cpu --no-progress
  done
done
python3 scripts/evaluation_tables.py "$OUT"/*/
