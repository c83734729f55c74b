#!/usr/bin/env bash
# Train under SLURM, with the original's arguments:
#
#   bash main/slurm_train.sh JOB_NAME NUM_GPUS CONFIG [key=value ...]
#   e.g. bash main/slurm_train.sh smpler_x_h32 16 config_smpler_x_h32.py
#
# One task per GPU (--ntasks=NUM_GPUS, up to 8 per node); each task runs `python -m main.train` and finds its rank,
# the master address (first node of the job) and a port derived from the job id from SLURM's variables. The run
# folder is output/train_JOB_NAME_<time>/; a requeued or resubmitted job resumes from its newest checkpoint.
# SLURM sends SIGUSR1 two minutes before the time limit: a checkpoint is written and the job exits.
#
# Cluster specifics come from the environment, nothing is hard-coded:
#   PARTITION       partition (-p); default: the cluster's default partition
#   GPUS_PER_NODE   tasks (GPUs) per node; default min(NUM_GPUS, 8)
#   CPUS_PER_TASK   default 4 (data-loader workers + main process)
#   GRES            generic resources per node; default gpu:GPUS_PER_NODE; set GRES= (empty) for CPU-only runs
#   SRUN_ARGS       extra srun flags, e.g. "--quotatype=auto --time=72:00:00"
#   PYTHON          interpreter; default .venv/bin/python of this checkout
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 JOB_NAME NUM_GPUS CONFIG [key=value ...]" >&2
  exit 2
fi
JOB_NAME="$1"; NUM_GPUS="$2"; CONFIG="$3"; shift 3
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GPUS_PER_NODE="${GPUS_PER_NODE:-$(( NUM_GPUS < 8 ? NUM_GPUS : 8 ))}"
CPUS_PER_TASK="${CPUS_PER_TASK:-4}"
GRES="${GRES-gpu:${GPUS_PER_NODE}}"
PYTHON="${PYTHON:-.venv/bin/python}"
args=(--job-name="$JOB_NAME" --ntasks="$NUM_GPUS" --ntasks-per-node="$GPUS_PER_NODE"
      --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 --signal=USR1@120)
[ -n "${PARTITION:-}" ] && args+=(-p "$PARTITION")
[ -n "$GRES" ] && args+=(--gres="$GRES")
# shellcheck disable=SC2086
exec srun "${args[@]}" ${SRUN_ARGS:-} "$PYTHON" -m main.train --config "$CONFIG" --exp_name "$JOB_NAME" \
  --resume auto "$@"
