"""Person detection for video inference, and the original demo's box post-processing.

Every detector is called as ``detector(rgb, frame_index=None) -> (boxes, scores)`` with ``rgb`` uint8 (H, W, 3) and
returns ``boxes`` float32 (N, 4) **xyxy** px of that image and ``scores`` float32 (N,) in [0, 1];
``detect_batch(frames, frame_indices)`` does the same for several frames (batched by :class:`TorchvisionDetector`).

* :class:`TorchvisionDetector`: a torchvision COCO detector (:data:`DETECTOR_ARCHS`), person class only. Its
  'fasterrcnn_resnet50_fpn' is the original's mmdet 2.x Faster R-CNN R50-FPN 1x COCO architecture with the same
  test-time settings (scores >= 0.05, per-class NMS at IoU 0.5, at most 100 boxes, shorter side 800 px); the default
  is the ~20x cheaper MobileNetV3-FPN (measured in docs/benchmarks.md). Weights come from ``pretrained_models/`` or
  torchvision's cache (``$TORCH_HOME/hub/checkpoints/``), fetched there unless offline
  (:mod:`common.engine.weights`).
* :class:`BoxesFileDetector`: boxes given in a JSON file (see its docstring for the schema).
* :class:`WholeFrameDetector`: the whole frame is one person (what single-image inference does without a box).

Post-processing (:func:`postprocess`) follows the original ``inference.py``, plus a score threshold it lacked:
score filter -> single person: the largest box / multi-person: NMS -> size rule (drop boxes narrower than
``bbox_thr`` or lower than ``3 * bbox_thr`` px).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import CheckpointError, InputError

COCO_PERSON_LABEL = 1  # torchvision's COCO label of "person" (0 is the background)

Detections = tuple[np.ndarray, np.ndarray]  # boxes float32 (N, 4) xyxy px, scores float32 (N,)


def _empty() -> Detections:
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)


# ------------------------------------------------------------------------------------------------ box utilities
def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) x, y, w, h -> x1, y1, x2 = x + w, y2 = y + h (same dtype family, float)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) x1, y1, x2, y2 -> x1, y1, w = x2 - x1, h = y2 - y1 (the original's conversion, without the +1)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def box_area(boxes: np.ndarray, plus_one: bool = False) -> np.ndarray:
    """(N,) areas of (N, 4) xyxy boxes (0 for inverted boxes); ``plus_one`` counts pixels inclusively (w = x2-x1+1)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    o = 1.0 if plus_one else 0.0
    return np.clip(b[:, 2] - b[:, 0] + o, 0, None) * np.clip(b[:, 3] - b[:, 1] + o, 0, None)


def box_iou(a: np.ndarray, b: np.ndarray, plus_one: bool = False) -> np.ndarray:
    """(N, M) intersection over union of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4); 0 where the union is empty.

    ``plus_one`` reproduces the original's pixel-inclusive widths (``x2 - x1 + 1``); the default treats boxes as
    continuous rectangles, which is what a detector's sub-pixel float boxes are.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    o = 1.0 if plus_one else 0.0
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + o, 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + o, 0, None)
    inter = iw * ih
    union = box_area(a, plus_one)[:, None] + box_area(b, plus_one)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


# ------------------------------------------------------------------------------------------------ post-processing
def score_filter(scores: np.ndarray, score_thr: float) -> np.ndarray:
    """Indices of detections with ``score >= score_thr`` (the original had no threshold: use 0 to match it)."""
    return np.flatnonzero(np.asarray(scores, dtype=np.float64).reshape(-1) >= score_thr)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thr: float = 0.5, plus_one: bool = False) -> np.ndarray:
    """Greedy non-maximum suppression as the original ``--multi_person`` mode; returns kept indices, best first.

    Boxes are visited by decreasing score (ties: larger area first, as the original's area-sorted input); a box is
    kept if its IoU with every kept box is **below** ``iou_thr`` (the original's ``iou < iou_thr``). IoU is
    continuous by default; ``plus_one=True`` gives the original's +1 px widths (differs by < 1% for person-sized
    boxes).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.lexsort((-box_area(boxes, plus_one), -scores))
    iou = box_iou(boxes, boxes, plus_one)
    keep: list[int] = []
    for i in order:
        if all(iou[i, j] < iou_thr for j in keep):
            keep.append(int(i))
    return np.asarray(keep, dtype=np.int64)


def largest_box(boxes: np.ndarray) -> np.ndarray:
    """Index (shape (1,), or (0,) without boxes) of the largest-area box: the original's single-person choice."""
    areas = box_area(boxes)
    return np.argmax(areas, keepdims=True).astype(np.int64) if len(areas) else np.zeros(0, np.int64)


def size_filter(boxes: np.ndarray, bbox_thr: float = 50.0) -> np.ndarray:
    """Indices of boxes kept by the original's size rule: width >= ``bbox_thr`` and height >= ``3 * bbox_thr`` px."""
    wh = xyxy_to_xywh(boxes)[:, 2:]
    return np.flatnonzero((wh[:, 0] >= bbox_thr) & (wh[:, 1] >= 3.0 * bbox_thr))


def postprocess(boxes: np.ndarray, scores: np.ndarray, *, score_thr: float = 0.0, multi_person: bool = False,
                iou_thr: float = 0.5, bbox_thr: float = 50.0, plus_one: bool = False) -> np.ndarray:
    """The original demo's selection of person boxes, with an added score threshold; returns indices into the input.

    Order of the steps as in the original: ``score_filter`` (new; 0 keeps all) -> single person: the largest box,
    multi-person: :func:`nms` (result ordered by score) -> :func:`size_filter` (so in single-person mode a too-small
    largest box yields nobody, as the original). Defaults are the original's ``--iou_thr 0.5 --bbox_thr 50``.
    """
    idx = score_filter(scores, score_thr)
    if multi_person:
        idx = idx[nms(np.asarray(boxes)[idx], np.asarray(scores)[idx], iou_thr, plus_one)]
    else:
        idx = idx[largest_box(np.asarray(boxes)[idx])]
    return idx[size_filter(np.asarray(boxes)[idx], bbox_thr)]


# ------------------------------------------------------------------------------------------------ detectors
def _check_frame(rgb: np.ndarray) -> None:
    if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8):
        raise InputError(f"detectors take uint8 RGB (H, W, 3) frames, got {getattr(rgb, 'dtype', type(rgb))} "
                         f"{getattr(rgb, 'shape', '')}")


class Detector:
    """Interface: ``detector(rgb, frame_index=None) -> (boxes xyxy float32 (N, 4), scores float32 (N,))``."""

    def __call__(self, rgb: np.ndarray, frame_index: int | None = None) -> Detections:
        return self.detect_batch([rgb], None if frame_index is None else [frame_index])[0]

    def detect_batch(self, frames: Sequence[np.ndarray], frame_indices: Sequence[int] | None = None
                     ) -> list[Detections]:
        """One ``(boxes, scores)`` per frame."""
        raise NotImplementedError


class WholeFrameDetector(Detector):
    """One box covering the frame, ``(0, 0, W, H)``, score 1."""

    def detect_batch(self, frames: Sequence[np.ndarray], frame_indices: Sequence[int] | None = None
                     ) -> list[Detections]:
        out = []
        for rgb in frames:
            _check_frame(rgb)
            h, w = rgb.shape[:2]
            out.append((np.array([[0.0, 0.0, w, h]], np.float32), np.ones(1, np.float32)))
        return out


class BoxesFileDetector(Detector):
    """Boxes read from a JSON file, looked up by frame index.

    Schema: an object mapping the frame index (a decimal string, as the ``index`` of
    :class:`common.utils.video.Frame`) to a list of boxes, each ``[x, y, w, h]`` or ``[x, y, w, h, score]`` in px of
    that frame (score 1 when absent)::

        {"0": [[100, 40, 200, 480, 0.98], [420, 60, 180, 450]], "1": [[104, 41, 199, 478]], "7": []}

    ``box_format="xyxy"`` reads ``[x1, y1, x2, y2(, score)]`` instead. A frame missing from the file has no boxes.
    ``frame_index`` is required when calling. Raises InputError for a file that does not follow the schema.
    """

    def __init__(self, path: str | Path, box_format: str = "xywh"):
        if box_format not in ("xywh", "xyxy"):
            raise ValueError(f"box_format must be 'xywh' or 'xyxy', got {box_format!r}")
        self.path = Path(path)
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError as err:
            raise InputError(f"boxes file not found: {self.path}") from err
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"cannot read boxes file {self.path}: {err}") from err
        if not isinstance(data, dict):
            raise InputError(f"boxes file {self.path} must hold a JSON object {{\"<frame index>\": [[x, y, w, h, "
                             f"score?], ...]}}, got a {type(data).__name__}")
        self.boxes: dict[int, Detections] = {}
        for key, items in data.items():
            self.boxes[self._frame_key(key)] = self._parse(key, items, box_format)

    def _frame_key(self, key: str) -> int:
        if not re.fullmatch(r"[0-9]+", key.strip()):
            raise InputError(f"boxes file {self.path}: key {key!r} is not a frame index (a non-negative integer)")
        return int(key)

    def _parse(self, key: str, items: Any, box_format: str) -> Detections:
        where = f"boxes file {self.path}, frame {key}"
        if not isinstance(items, list):
            raise InputError(f"{where}: expected a list of boxes [[x, y, w, h, score?], ...]")
        if not items:
            return _empty()
        rows = []
        for box in items:
            ok = isinstance(box, list) and len(box) in (4, 5) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
            if not ok:
                raise InputError(f"{where}: box {box!r} is not [x, y, w, h] or [x, y, w, h, score] (numbers)")
            rows.append([float(v) for v in box[:4]] + [float(box[4]) if len(box) == 5 else 1.0])
        arr = np.asarray(rows, dtype=np.float64)
        boxes = xywh_to_xyxy(arr[:, :4]) if box_format == "xywh" else arr[:, :4]
        if np.any(boxes[:, 2] <= boxes[:, 0]) or np.any(boxes[:, 3] <= boxes[:, 1]):
            raise InputError(f"{where}: boxes must have positive width and height ({box_format})")
        return boxes.astype(np.float32), arr[:, 4].astype(np.float32)

    def detect_batch(self, frames: Sequence[np.ndarray], frame_indices: Sequence[int] | None = None
                     ) -> list[Detections]:
        if frame_indices is None or len(frame_indices) != len(frames):
            raise ValueError("BoxesFileDetector needs the frame index of every frame (frame_index=...)")
        out = []
        for idx in frame_indices:
            boxes, scores = self.boxes.get(int(idx), _empty())
            out.append((boxes.copy(), scores.copy()))
        return out


# torchvision COCO detectors that find people; each entry: keyword of its output score threshold, whether it takes
# min_size / max_size (the SSD family resizes to a fixed 320 px), and its person label (91-class COCO indexing; the
# keypoint R-CNN has two classes, background and person)
DETECTOR_ARCHS: dict[str, tuple[str, bool, int]] = {
    "fasterrcnn_resnet50_fpn": ("box_score_thresh", True, COCO_PERSON_LABEL),  # the original's architecture
    "fasterrcnn_resnet50_fpn_v2": ("box_score_thresh", True, COCO_PERSON_LABEL),
    "fasterrcnn_mobilenet_v3_large_fpn": ("box_score_thresh", True, COCO_PERSON_LABEL),
    "fasterrcnn_mobilenet_v3_large_320_fpn": ("box_score_thresh", True, COCO_PERSON_LABEL),
    "retinanet_resnet50_fpn_v2": ("score_thresh", True, COCO_PERSON_LABEL),
    "fcos_resnet50_fpn": ("score_thresh", True, COCO_PERSON_LABEL),
    "ssdlite320_mobilenet_v3_large": ("score_thresh", False, COCO_PERSON_LABEL),
    "keypointrcnn_resnet50_fpn": ("box_score_thresh", True, 1),
}
DEFAULT_DETECTOR = "fasterrcnn_mobilenet_v3_large_fpn"  # chosen by measurement: docs/benchmarks.md
# The video pipeline's detector settings (chosen by measurement, docs/benchmarks.md): together ~3x cheaper on a CPU
# than torchvision's (800 px, 1000 proposals). People worth a SMPL-X estimate are large in the frame (the size rule
# drops boxes under 50 x 150 px); raise the size for small, distant people.
DEFAULT_DETECTOR_SIZE = 448  # px, shorter side of the detector's input (torchvision's R-CNNs use 800)
DEFAULT_PROPOSALS = 200  # R-CNN region proposals per image before and after the RPN's NMS (torchvision: 1000 /
# 1000 on 5 FPN levels): the box head's cost scales with them, and a frame holds a few people, not hundreds of
# objects (torchvision's own 320 px MobileNet model keeps 150)


class TorchvisionDetector(Detector):
    """A torchvision COCO detector keeping the person class.

    Args:
        weights: weight file; default: the architecture's COCO weights from ``pretrained_models/`` or torchvision's
            cache, downloaded there unless offline (:func:`common.engine.weights.resolve_detector_weights`).
        arch: one of :data:`DETECTOR_ARCHS`; 'fasterrcnn_resnet50_fpn' is the original's architecture, the default
            :data:`DEFAULT_DETECTOR` is ~20x cheaper on a CPU (docs/benchmarks.md has each one's time per frame).
        device: torch device for the network.
        batch_size: frames per forward pass in :meth:`detect_batch`.
        min_size, max_size: torchvision's resize (shorter side to ``min_size``, longer side at most ``max_size``);
            None keeps the architecture's own (800 / 1333 for the R-CNNs, 320 for the *_320 models).
        box_score_thresh: the network's own output threshold (0.05 as mmdet's test config; filter further with
            :func:`postprocess`).
        proposals: R-CNN region proposals per FPN level before the RPN's NMS and per image after it (None:
            torchvision's 1000 / 1000).

    Weights are found (or fetched) before the network is built, so a missing file fails fast with instructions;
    they are read with ``torch.load(weights_only=True)``.
    """

    def __init__(self, weights: str | Path | None = None, arch: str = DEFAULT_DETECTOR, device: str = "cpu",
                 batch_size: int = 4, min_size: int | None = None, max_size: int | None = None,
                 box_score_thresh: float = 0.05, proposals: int | None = None):
        import torch

        from common.engine.weights import detector_weights_info, resolve_detector_weights

        if arch not in DETECTOR_ARCHS:
            raise InputError(f"unknown detector {arch!r}; choose one of {', '.join(DETECTOR_ARCHS)}")
        thresh_key, resizable, self.person_label = DETECTOR_ARCHS[arch]
        if weights is None:
            path = resolve_detector_weights(arch)
        else:
            path = Path(weights)
            if not path.is_file():
                raise CheckpointError(f"person detector weights not found: {path}; download "
                                      f"{detector_weights_info(arch).url} there")
        import torchvision.models.detection as tvd

        kwargs: dict[str, Any] = {thresh_key: box_score_thresh}
        if resizable:
            kwargs.update({k: v for k, v in (("min_size", min_size), ("max_size", max_size)) if v is not None})
        if proposals is not None and thresh_key == "box_score_thresh":  # the R-CNN family
            kwargs["rpn_pre_nms_top_n_test"] = kwargs["rpn_post_nms_top_n_test"] = int(proposals)
        num_classes = 2 if arch.startswith("keypointrcnn") else 91
        # weights=None / weights_backbone=None: build the bare network, never touch the network (no download)
        self.model = getattr(tvd, arch)(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.model.load_state_dict(state)
        except Exception as err:  # noqa: BLE001 - any unreadable / mismatching file gets the same advice
            raise CheckpointError(f"cannot load person detector weights {path} into torchvision {arch}: "
                                  f"{type(err).__name__}: {str(err)[:300]}; use the file "
                                  f"{detector_weights_info(arch).url}") from err
        self.arch = arch
        self.device = torch.device(device)
        self.model.eval().to(self.device)
        self.batch_size = batch_size
        self.weights_path = path

    def detect_batch(self, frames: Sequence[np.ndarray], frame_indices: Sequence[int] | None = None
                     ) -> list[Detections]:
        import torch

        out: list[Detections] = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start: start + self.batch_size]
            tensors = []
            for rgb in chunk:
                _check_frame(rgb)
                tensors.append(torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device).permute(2, 0, 1)
                               .float().div_(255.0))
            with torch.inference_mode():
                preds = self.model(tensors)
            for p in preds:
                keep = p["labels"] == self.person_label
                out.append((p["boxes"][keep].float().cpu().numpy().astype(np.float32),
                            p["scores"][keep].float().cpu().numpy().astype(np.float32)))
        return out
