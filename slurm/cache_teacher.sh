#!/bin/bash
# Teacher cache for stage 1 (`dcclip teacher-cache`): runs the frozen teacher once over the stage-1 data and stores
# its targets. One process on one node (the command is not distributed), so ask for one GPU:
#   sbatch [sbatch options] slurm/cache_teacher.sh CONFIG.yaml --teacher_cache_dir FOLDER [--flag value ...]
# e.g. sbatch -p gpu -A myproject -t 12:00:00 --gpus-per-node=1 slurm/cache_teacher.sh my_distill.yaml \
#          --teacher_cache_dir runs/teacher_cache
# sbatch options override the #SBATCH lines below (so do SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_TIMELIMIT,
# SBATCH_GPUS_PER_NODE in the environment). Submit from the repository root, or set DCCLIP_ROOT. A preempted job
# requeues itself and rebuilds the cache from the start (a half-written cache folder is replaced). See
# docs/scale_out.md.
#SBATCH --job-name=dcclip-teacher-cache
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.log
set -euo pipefail
DCCLIP_ROOT="${DCCLIP_ROOT:-$SLURM_SUBMIT_DIR}"
[[ -f "$DCCLIP_ROOT/slurm/common.sh" ]] || { echo "no slurm/common.sh in $DCCLIP_ROOT: set DCCLIP_ROOT" >&2; exit 1; }
source "$DCCLIP_ROOT/slurm/common.sh"
dcclip_take_config "$@"
shift
restart_args=()
if [[ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]]; then
    restart_args=(--overwrite_cache true)  # the interrupted attempt left a partial cache folder
fi
dcclip_run_step --nodes=1 --ntasks=1 python -m dcclip.trainers.cache_teacher "$DCCLIP_CONFIG" "$@" "${restart_args[@]}"
