#!/usr/bin/env bash
# Video inference under SLURM, with the original's arguments and folders:
#
#   bash main/slurm_inference.sh VIDEO FORMAT FPS CKPT [video_inference flags ...]
#   e.g. bash main/slurm_inference.sh test_video mp4 24 smpler_x_h32 --multi_person --track
#
# Reads demo/videos/VIDEO.FORMAT and the checkpoint CKPT: pretrained_models/CKPT.pth.tar, a file path, or a released
# name (smpler_x_{s,b,l,h}32) resolved through the Hugging Face cache on the submitting host. Writes
# demo/results/VIDEO/: smplx/, meta/, mesh/ per frame and person, VIDEO.npz (everything stacked) and the overlay
# video VIDEO_overlay.mp4; with --track also VIDEO.glb (animated) and bvh/ (see main/video_inference.py). Frames
# are decoded in-process by PyAV and resampled to FPS (the original extracted JPEGs with ffmpeg first and re-encoded
# them at the end; neither step exists here). As the original script, the overlay
# shows vertex dots and the detected boxes and meshes are saved; flags after CKPT are passed on (e.g.
# --multi_person --iou_thr 0.2 --bbox_thr 20, --track, --boxes FILE, --body-model-dir DIR).
# One task (one GPU); the model's config comes from the checkpoint.
#
# Cluster specifics come from the environment, nothing is hard-coded:
#   PARTITION       partition (-p); default: the cluster's default partition
#   CPUS_PER_TASK   default 4 (decoding, detection and rendering threads + the network)
#   GRES            generic resources; default gpu:1; set GRES= (empty) for CPU-only runs
#   DEVICE          torch device; default cuda, or cpu when GRES is empty
#   SRUN_ARGS       extra srun flags, e.g. "--quotatype=auto --time=4:00:00"
#   PYTHON          interpreter; default .venv/bin/python of this checkout
#   DEMO_DIR        folder holding videos/ and results/; default demo
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 VIDEO FORMAT FPS CKPT [video_inference flags ...]   (e.g. $0 test_video mp4 24 smpler_x_h32)" >&2
  exit 2
fi
VIDEO="$1"; FORMAT="$2"; FPS="$3"; CKPT="$4"; shift 4
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DEMO_DIR="${DEMO_DIR:-demo}"  # the original's folder: videos/ in, results/ out
INPUT="${DEMO_DIR}/videos/${VIDEO}.${FORMAT}"
SAVE_DIR="${DEMO_DIR}/results/${VIDEO}"
PYTHON="${PYTHON:-.venv/bin/python}"
# fail here, not after waiting for an allocation
[ -f "$INPUT" ] || { echo "error: video not found: $INPUT (put VIDEO.FORMAT into ${DEMO_DIR}/videos/)" >&2; exit 2; }
if [ -f "pretrained_models/${CKPT}.pth.tar" ]; then
  WEIGHTS="pretrained_models/${CKPT}.pth.tar"
elif [ -f "$CKPT" ]; then
  WEIGHTS="$CKPT"
else
  # a released name (smpler_x_s32 ...): found in, or fetched into, the Hugging Face cache on this host now, so
  # compute nodes without internet get a local file (python -m common.engine.weights prints "NAME: PATH")
  resolved="$("$PYTHON" -m common.engine.weights "$CKPT")" || exit 2
  WEIGHTS="${resolved#*: }"
fi
CPUS_PER_TASK="${CPUS_PER_TASK:-4}"
GRES="${GRES-gpu:1}"
if [ -n "$GRES" ]; then DEVICE="${DEVICE:-cuda}"; else DEVICE="${DEVICE:-cpu}"; fi
args=(--job-name="inference_${VIDEO}" --ntasks=1 --ntasks-per-node=1 --cpus-per-task="$CPUS_PER_TASK"
      --kill-on-bad-exit=1)
[ -n "${PARTITION:-}" ] && args+=(-p "$PARTITION")
[ -n "$GRES" ] && args+=(--gres="$GRES")
# shellcheck disable=SC2086
exec srun "${args[@]}" ${SRUN_ARGS:-} "$PYTHON" -m main.video_inference --ckpt "$WEIGHTS" --input "$INPUT" \
  --output "$SAVE_DIR" --fps "$FPS" --device "$DEVICE" --threads "$CPUS_PER_TASK" --show_verts --show_bbox \
  --save_mesh "$@"
