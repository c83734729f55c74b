#!/usr/bin/env bash
# Evaluate a training run's checkpoint on the benchmark list under SLURM, with the original's arguments:
#
#   bash main/slurm_test.sh JOB_NAME NUM_GPUS TRAIN_OUTPUT_DIR CKPT_ID [extra main.test arguments ...]
#   e.g. bash main/slurm_test.sh test_h32 8 train_smpler_x_h32_20231010_000000 9
#
# TRAIN_OUTPUT_DIR is a run folder (a path, or a name under output/ as in the original); CKPT_ID the epoch of its
# model_dump/snapshot_<CKPT_ID>.pth.tar. One task per GPU: each evaluates a contiguous share of every test set and
# rank 0 gathers and writes. The benchmark list is the original's: PW3D, EgoBody_Egocentric, UBody, EHF, AGORA
# (validation metrics + submission files), ARCTIC, RenBody_HiRes, AGORA:test (submission files). A set whose data is
# missing is reported and the others still run (exit code 2 at the end). Results go to
# output/test_JOB_NAME_epCKPT_ID/<set>/ (result.json, per_sample.csv, the printed table) with summary.json (all
# sets and the MPE) beside them.
#
# Cluster specifics come from the environment, nothing is hard-coded:
#   TESTSETS        space-separated test sets instead of the benchmark list (NAME or NAME:split)
#   PARTITION       partition (-p); default: the cluster's default partition
#   GPUS_PER_NODE   tasks (GPUs) per node; default min(NUM_GPUS, 8)
#   CPUS_PER_TASK   default 4 (data-loader workers + main process)
#   GRES            generic resources per node; default gpu:GPUS_PER_NODE; set GRES= (empty) for CPU-only runs
#   DEVICE          cuda (default) or cpu (the default when GRES is empty)
#   SRUN_ARGS       extra srun flags, e.g. "--quotatype=auto --time=4:00:00"
#   PYTHON          interpreter; default .venv/bin/python of this checkout
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 JOB_NAME NUM_GPUS TRAIN_OUTPUT_DIR CKPT_ID [extra main.test arguments ...]" >&2
  exit 2
fi
JOB_NAME="$1"; NUM_GPUS="$2"; RUN="$3"; CKPT="$4"; shift 4
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUTPUT_ROOT="${SMPLERX_OUTPUT_DIR:-output}"
if [ ! -d "$RUN" ] && [ -d "$OUTPUT_ROOT/$RUN" ]; then RUN="$OUTPUT_ROOT/$RUN"; fi
if [ ! -f "$RUN/model_dump/snapshot_${CKPT}.pth.tar" ]; then
  echo "error: no checkpoint $RUN/model_dump/snapshot_${CKPT}.pth.tar (give a training run folder and an epoch" \
       "that has a snapshot)" >&2
  exit 2
fi
TESTSETS="${TESTSETS:-PW3D EgoBody_Egocentric UBody EHF AGORA ARCTIC RenBody_HiRes AGORA:test}"
GPUS_PER_NODE="${GPUS_PER_NODE:-$(( NUM_GPUS < 8 ? NUM_GPUS : 8 ))}"
CPUS_PER_TASK="${CPUS_PER_TASK:-4}"
GRES="${GRES-gpu:${GPUS_PER_NODE}}"
if [ -n "$GRES" ]; then DEVICE="${DEVICE:-cuda}"; else DEVICE="${DEVICE:-cpu}"; fi
PYTHON="${PYTHON:-.venv/bin/python}"
# The ranks meet at the end (main.test's last barrier), so a finished task waits at most seconds for the others;
# --wait ends the step 120 s after the first task exits (a crashed rank cannot hang the rest). Not
# --kill-on-bad-exit: ranks that report a failed set exit 2 together, and the first to leave would get the others
# killed mid-teardown (exit 143 instead of 2).
args=(--job-name="$JOB_NAME" --ntasks="$NUM_GPUS" --ntasks-per-node="$GPUS_PER_NODE"
      --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=0 --wait=120)
[ -n "${PARTITION:-}" ] && args+=(-p "$PARTITION")
[ -n "$GRES" ] && args+=(--gres="$GRES")
# shellcheck disable=SC2086
exec srun "${args[@]}" ${SRUN_ARGS:-} "$PYTHON" -m main.test --run-dir "$RUN" --epoch "$CKPT" \
  --testset $TESTSETS --output "$OUTPUT_ROOT/test_${JOB_NAME}_ep${CKPT}" --device "$DEVICE" --keep-going \
  --no-progress "$@"
