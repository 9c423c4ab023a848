# Shared by the sbatch scripts in slurm/ (sourced, never run on its own): environment hook, preemption handling and
# the launchers. Everything here reads SLURM's own variables, so one script runs on 1 or N nodes unchanged.
#
# The sourcing script sets DCCLIP_ROOT (the repository). Jobs run in the folder sbatch was called from, so relative
# paths in the arguments (config, --output_dir) mean what they meant on the command line.
#
# Environment variables read here (all optional):
#   DCCLIP_ENV_SETUP   a file sourced before launching (site `module load`s, `conda activate`, a venv)
#   DCCLIP_MASTER_PORT rendezvous port on the first node (default: 20000 + job id modulo 20000, so that jobs that
#                      share a node do not collide)

# Writes an error to the job log and stops the job.
dcclip_die() {
    echo "dcclip slurm: error: $*" >&2
    exit 1
}

# Sources the site's environment hook, if any. `set -u` is lifted meanwhile: conda and module scripts read unset
# variables.
dcclip_setup_environment() {
    [[ -z "${DCCLIP_ENV_SETUP:-}" ]] && return 0
    [[ -f "$DCCLIP_ENV_SETUP" ]] || dcclip_die "DCCLIP_ENV_SETUP=$DCCLIP_ENV_SETUP is not a file"
    set +u
    # shellcheck disable=SC1090
    source "$DCCLIP_ENV_SETUP"
    set -u
}

# Preemption and time limits: `#SBATCH --signal=B:USR1@<secs>` sends USR1 to this batch shell before the job is
# stopped; requeueing puts the same job id back in the queue, and the restarted job carries on by itself (training
# resumes from the newest complete checkpoint).
dcclip_requeue_on_usr1() {
    echo "dcclip slurm: USR1 received (time limit or preemption ahead): requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
}

# Processes per node: one per allocated GPU; on CPU-only nodes, the allocation's tasks per node.
dcclip_procs_per_node() {
    if [[ "${SLURM_GPUS_ON_NODE:-0}" -gt 0 ]]; then
        echo "$SLURM_GPUS_ON_NODE"
    else
        echo "${SLURM_NTASKS_PER_NODE:-1}"
    fi
}

# Takes the config file off the front of the arguments ("$1", required) into DCCLIP_CONFIG.
dcclip_take_config() {
    [[ $# -gt 0 && "$1" != -* ]] || dcclip_die "the first argument must be the config file (YAML/JSON), got: $*"
    [[ -f "$1" ]] || dcclip_die "config file not found: $1 (relative to $PWD)"
    DCCLIP_CONFIG="$1"
}

# Runs `srun [srun options] -- COMMAND...` in the background and waits for it, so that the USR1 trap can run (bash
# runs traps only between commands, and `wait` is interruptible). Returns the step's exit status.
dcclip_run_step() {
    [[ -n "${SLURM_JOB_ID:-}" ]] || dcclip_die "not inside a SLURM job: submit with sbatch"
    dcclip_setup_environment
    trap dcclip_requeue_on_usr1 USR1
    echo "dcclip slurm: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NODELIST, $(date -Is)"
    echo "dcclip slurm: srun $*"
    srun "$@" &
    local status=0
    wait $! || status=$?
    echo "dcclip slurm: exit status $status, $(date -Is)"
    return "$status"
}

# Trains with a Trainer entry script (relative to the repository) on every process of the allocation: one
# `torch.distributed.run` launcher per node, joined by a c10d rendezvous on the allocation's first host. Arguments:
# `CONFIG [--flag value ...]` as given to sbatch; `--resume_from_checkpoint auto` goes between the two, so that an
# explicit `--resume_from_checkpoint PATH` override still wins.
dcclip_launch_training() {
    local entry="$1"
    shift
    dcclip_take_config "$@"
    shift
    local nodes="$SLURM_JOB_NUM_NODES" procs
    procs="$(dcclip_procs_per_node)"
    MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)"
    MASTER_PORT="${DCCLIP_MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}"
    export MASTER_ADDR MASTER_PORT
    echo "dcclip slurm: $nodes node(s) x $procs process(es), rendezvous $MASTER_ADDR:$MASTER_PORT"
    dcclip_run_step --nodes="$nodes" --ntasks="$nodes" --ntasks-per-node=1 --kill-on-bad-exit=1 \
        python -m torch.distributed.run \
        --nnodes="$nodes" --nproc_per_node="$procs" --max_restarts=0 \
        --rdzv_backend=c10d --rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv_id="$SLURM_JOB_ID" \
        "$DCCLIP_ROOT/$entry" "$DCCLIP_CONFIG" --resume_from_checkpoint auto "$@"
}
