#!/bin/bash
#SBATCH --job-name=bida
#SBATCH --cpus-per-task=1
#SBATCH --mem=2G
# One bida participant per SLURM array task (tested by tests/test_slurm.py on a one-node
# cluster). Usage:
#
#   sbatch --array=1-$(wc -l < participants.txt)%4 [resources] \
#       scripts/slurm_array.sh BIDS_DIR OUT_DIR participants.txt [bida options]
#
# participants.txt holds one label per line (01, 02, ...). Options on the sbatch command line
# override the #SBATCH lines above, e.g. --cpus-per-task=4 --mem=16G --gres=gpu:1.
# BIDA is the command that runs bida (default "bida"), e.g.
#   BIDA="apptainer run --nv -B /data:/data:ro -B /out:/out bida.sif"
# Each task gets its own work dir under BIDA_WORK_ROOT (default $TMPDIR or /tmp), named by
# the array job and task ids; tasks write disjoint sub-<label> folders.
set -euo pipefail
if [ $# -lt 3 ] || [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
  echo "usage: sbatch --array=1-N $0 BIDS_DIR OUT_DIR PARTICIPANTS_FILE [bida options]" >&2
  exit 64
fi
bids_dir=$1
out_dir=$2
list=$3
shift 3
label=$(sed -n "${SLURM_ARRAY_TASK_ID}p" "$list")
if [ -z "$label" ]; then
  echo "$list: no line ${SLURM_ARRAY_TASK_ID}" >&2
  exit 66
fi
work="${BIDA_WORK_ROOT:-${TMPDIR:-/tmp}}/bida-work-${SLURM_ARRAY_JOB_ID}-${SLURM_ARRAY_TASK_ID}"
read -r -a bida <<< "${BIDA:-bida}"
exec "${bida[@]}" "$bids_dir" "$out_dir" participant --participant_label "$label" \
  -w "$work" --nprocs "${SLURM_CPUS_PER_TASK:-1}" "$@"
