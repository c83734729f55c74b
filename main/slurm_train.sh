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
#   CACHE_STEP      1 (default): build the datalist caches in one task before the ranks start; 0: skip that step
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
# Datalist caches: one task builds every missing / stale cache of the config's training sets first
# (python -m main.humandata_tool cache), so the ranks below only map the finished cache files (one shared copy per
# node) instead of all waiting for a builder. Without this step local rank 0 of each node builds them while the
# other ranks wait (data.cache_timeout). Only the key=value overrides are passed on (not main.train's flags).
if [ "${CACHE_STEP:-1}" != 0 ]; then
  overrides=()
  for a in "$@"; do
    if [[ "$a" == *=* && "$a" != -* ]]; then overrides+=("$a"); fi
  done
  cache_args=(--job-name="${JOB_NAME}_cache" --ntasks=1 --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1)
  [ -n "${PARTITION:-}" ] && cache_args+=(-p "$PARTITION")
  # shellcheck disable=SC2086
  srun "${cache_args[@]}" ${SRUN_ARGS:-} "$PYTHON" -m main.humandata_tool cache --config "$CONFIG" --no-test \
    ${overrides[@]+"${overrides[@]}"}
fi
# shellcheck disable=SC2086
exec srun "${args[@]}" ${SRUN_ARGS:-} "$PYTHON" -m main.train --config "$CONFIG" --exp_name "$JOB_NAME" \
  --resume auto "$@"
