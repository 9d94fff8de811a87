#!/usr/bin/env bash
# Leave-one-volume-out evaluation on the real isotropic mice of ../shared/data, as published in
# the README and the model card. Resumable: rerun to finish (each OUT_DIR keeps its rows).
#   scripts/evaluate_real.sh [OUT_ROOT] [DATA_DIR]
# 1. the slice-profile and noise grid, cubic vs dccubic: simulated profile (Gaussian, SLR
#    TBW 16) x noise (none, 0.25, 0.5, 1, 2, 4 %) x forward model (the default: Gaussian A,
#    noise-adaptive projection, --dc-damping auto; the 0.5.0 default, damping 0.1; the exact
#    Gaussian projection; the exact SLR TBW-4 projection of 0.4.0, and SLR TBW 4 with auto),
#    then cDSC of the default on noise-free Gaussian slices;
# 2. BiDA (shipped priors) on the held-out RMINC mouse beside dccubic (4 steps; 1 or 4 samples).
# The DSURQE mouse trained the shipped priors: BiDA is not scored on it (leave-one-out guard).
set -euo pipefail
OUT=${1:-eval-real}
DATA=${2:-../shared/data}
RMINC="$DATA/mouse_rminc-120um_T2w.nii.gz"
DSURQE="$DATA/mouse_dsurqe-200um_T2w.nii.gz"
for sim in gaussian slr; do
  for noise in 0 0.0025 0.005 0.01 0.02 0.04; do
    for a in "gaussian auto" "gaussian 0.1" "gaussian 0" "slr 0" "slr auto"; do  # A, damping
      set -- $a
      bida evaluate "$RMINC" "$DSURQE" "$OUT/${sim}-sim_n${noise}_${1}-A_d$2" \
        --methods cubic dccubic --profile "$sim" --noise "$noise" --recon-profile "$1" \
        --dc-damping "$2" --no-cdsc --device cpu --no-progress
    done
  done
done
bida evaluate "$RMINC" "$DSURQE" "$OUT/cdsc_gaussian-sim" --methods cubic dccubic \
  --profile gaussian --species mouse --device cpu --no-progress
for sim in gaussian slr; do
  for k in 1 4; do  # posterior samples
    bida evaluate "$RMINC" "$OUT/bida_${sim}-sim_k$k" --methods cubic dccubic bida \
      --profile "$sim" --n-samples "$k" --no-cdsc --device cpu --no-progress
  done
done
python3 scripts/evaluation_tables.py "$OUT"/*/
