#!/bin/bash
# Teacher cache for stage 1 (`dcclip teacher-cache`): runs the frozen teacher once over the stage-1 data and stores
# what the loss reads. Submit it as a job array: each array task writes one shard of the cache (the shard index and
# count come from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT), one process on one GPU:
#   sbatch --array=0-31 [sbatch options] slurm/cache_teacher.sh CONFIG.yaml --teacher_cache_dir FOLDER [--flag value ...]
# e.g. sbatch --array=0-31 -p gpu -A myproject -t 4:00:00 --gpus-per-node=1 slurm/cache_teacher.sh my_distill.yaml \
#          --teacher_cache_dir runs/teacher_cache
# Without --array it is one task writing the whole cache. Use --array=0-N without a step (one shard per task), and
# the same array size when resubmitting. sbatch options override the #SBATCH lines below (so do SBATCH_PARTITION,
# SBATCH_ACCOUNT, SBATCH_TIMELIMIT, SBATCH_GPUS_PER_NODE in the environment). Submit from the repository root, or set
# DCCLIP_ROOT. A preempted or resubmitted task keeps its shard if it is complete and rewrites it if it was cut off
# (a shard appears under its final name only once complete). See docs/scale_out.md.
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
echo "dcclip slurm: teacher cache shard ${SLURM_ARRAY_TASK_ID:-0} of ${SLURM_ARRAY_TASK_COUNT:-1}"
dcclip_run_step --nodes=1 --ntasks=1 python -m dcclip.trainers.cache_teacher "$DCCLIP_CONFIG" "$@"
