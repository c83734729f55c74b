#!/usr/bin/env bash
# Video inference under SLURM, with the original's arguments and folders:
#
#   bash main/slurm_inference.sh VIDEO FORMAT FPS CKPT [video_inference flags ...]
#   e.g. bash main/slurm_inference.sh test_video mp4 24 smpler_x_h32 --multi_person --track
#
# Reads demo/videos/VIDEO.FORMAT and pretrained_models/CKPT.pth.tar, writes demo/results/VIDEO/: smplx/, meta/,
# mesh/ per frame and person, VIDEO.npz (everything stacked) and the overlay video VIDEO_overlay.mp4 (see
# main/video_inference.py). Frames are decoded in-process by PyAV and resampled to FPS (the original extracted JPEGs
# with ffmpeg first and re-encoded them at the end; neither step exists here). As the original script, the overlay
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
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 VIDEO FORMAT FPS CKPT [video_inference flags ...]   (e.g. $0 test_video mp4 24 smpler_x_h32)" >&2
  exit 2
fi
VIDEO="$1"; FORMAT="$2"; FPS="$3"; CKPT="$4"; shift 4
cd "$(dirname "${BASH_SOURCE[0]}")/.."
INPUT="demo/videos/${VIDEO}.${FORMAT}"
WEIGHTS="pretrained_models/${CKPT}.pth.tar"
SAVE_DIR="demo/results/${VIDEO}"
# fail here, not after waiting for an allocation
[ -f "$INPUT" ] || { echo "error: video not found: $INPUT (put VIDEO.FORMAT into demo/videos/)" >&2; exit 2; }
[ -f "$WEIGHTS" ] || { echo "error: checkpoint not found: $WEIGHTS (download it into pretrained_models/, see" \
  "pretrained_models/README.md)" >&2; exit 2; }
CPUS_PER_TASK="${CPUS_PER_TASK:-4}"
GRES="${GRES-gpu:1}"
if [ -n "$GRES" ]; then DEVICE="${DEVICE:-cuda}"; else DEVICE="${DEVICE:-cpu}"; fi
PYTHON="${PYTHON:-.venv/bin/python}"
args=(--job-name="inference_${VIDEO}" --ntasks=1 --ntasks-per-node=1 --cpus-per-task="$CPUS_PER_TASK"
      --kill-on-bad-exit=1)
[ -n "${PARTITION:-}" ] && args+=(-p "$PARTITION")
[ -n "$GRES" ] && args+=(--gres="$GRES")
# shellcheck disable=SC2086
exec srun "${args[@]}" ${SRUN_ARGS:-} "$PYTHON" -m main.video_inference --ckpt "$WEIGHTS" --input "$INPUT" \
  --output "$SAVE_DIR" --fps "$FPS" --device "$DEVICE" --threads "$CPUS_PER_TASK" --show_verts --show_bbox \
  --save_mesh "$@"
