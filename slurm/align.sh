#!/bin/bash
# Stage 2, vision-language alignment (InfoNCE), on one or more nodes:
#   sbatch [sbatch options] slurm/align.sh CONFIG.yaml [--flag value ...]
# e.g. sbatch -p gpu -A myproject -t 24:00:00 -N 4 --gpus-per-node=8 slurm/align.sh my_align.yaml \
#          --student runs/distill/final --deepspeed ds_configs/zero2.json --output_dir runs/align
# sbatch options override the #SBATCH lines below (so do SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_TIMELIMIT,
# SBATCH_GPUS_PER_NODE in the environment). Submit from the repository root, or set DCCLIP_ROOT. Preempted or
# timed-out jobs requeue themselves and resume from the newest complete checkpoint in --output_dir. See
# docs/scale_out.md.
#SBATCH --job-name=dcclip-align
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.log
set -euo pipefail
DCCLIP_ROOT="${DCCLIP_ROOT:-$SLURM_SUBMIT_DIR}"
[[ -f "$DCCLIP_ROOT/slurm/common.sh" ]] || { echo "no slurm/common.sh in $DCCLIP_ROOT: set DCCLIP_ROOT" >&2; exit 1; }
source "$DCCLIP_ROOT/slurm/common.sh"
dcclip_launch_training trainers/align.py "$@"
