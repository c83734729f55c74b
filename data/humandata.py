"""Reader for mmhuman3d HumanData annotation files (``.npz``) -> SMPLer-X datalist records (facts sheet 4.6).

:func:`load_humandata` reads one file into a :class:`HumanDataRecords`: the usable rows as column arrays (no per-row
Python objects, so data-loader workers share them copy-on-write), from which ``records.entry(i)`` builds the datalist
entry dict of row ``i`` on demand. Entry keys, shapes and units:

======================  ==================  ================================================================
``img_path``            str                 absolute path of the image
``img_shape``           (h, w) ints         px
``bbox``                float32 (4,)        processed body box, xywh px (aspect 0.75, ``bbox_ratio`` x 0.833)
``lhand_bbox`` ...      float32 (4,)|None   ``rhand_bbox``, ``face_bbox``: processed xyxy px, None if absent
``joint_img``           float32 (137, 3)    2D keypoints in the 137 supervision set: x, y px, confidence
``joint_cam``           float32 (137, 3)    3D keypoints, metres, camera frame (as in the file); or None
``joint_valid``         float32 (137, 1)    dataset-wide keypoint mask (3D mask preferred, else 2D)
``smplx_param``         dict | None         SMPL-X fit: axis-angle poses, betas, expression, transl (metres)
``camera``              dict                dataset camera: optional ``focal`` (2,), ``princpt`` (2,) px
``dataset``, ``index``  str, int            catalog name, row in the file
======================  ==================  ================================================================

``smplx_param`` holds ``root_pose`` (3,), ``body_pose`` (63,), ``lhand_pose`` (45,), ``rhand_pose`` (45,),
``jaw_pose`` (3,) (axis-angle, hand poses as offsets from the SMPL-X hand mean, i.e. ``flat_hand_mean=False``),
``shape`` (10,), ``expr`` (10,), ``trans`` (3,) (float32), the bools ``lhand_valid``/``rhand_valid``/``face_valid``
(missing parts are zeros with the flag False) and ``gender`` ('neutral' | 'male' | 'female').

Rows that cannot be used are skipped and counted by reason (``records.skipped``): no image size, an invalid body
box, non-finite 3D or 2D keypoints (at keypoints the file marks valid) or non-finite SMPL-X parameters.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.body_model.joint_sets import EXPR_PARAM_DIM, JOINT_IDX, JOINT_NUM, SHAPE_PARAM_DIM
from common.errors import BodyModelFilesMissing, ConfigError, InputError
from data.catalog import CATALOG, QUIRKS
from data.npz_reader import _READ_ERRORS, NpzReader

log = logging.getLogger(__name__)

# Bump when the records produced for the same inputs change (invalidates data/cache.py caches).
READER_VERSION = 1

REQUIRED_KEYS = ("image_path", "bbox_xywh", "__keypoints_compressed__")
# Key priorities of the original: camera-frame keypoints first, then the old generic key, then the SMPL-X fit's.
KPS3D_KEYS = ("keypoints3d_cam", "keypoints3d", "keypoints3d_smplx", "keypoints3d_smpl", "keypoints3d_original")
KPS2D_KEYS = ("keypoints2d", "keypoints2d_smplx", "keypoints2d_smpl", "keypoints2d_original")
PARAM_SOURCES = ("smplx", "smpl", "smplh")

# HumanData keypoints follow the "smplx" convention whose first 144 entries are the SMPL-X layer joints, so the
# model's own table picks the 137 supervision joints. The original used a copy with entries 67/68 (Face_3/Face_4)
# swapped to the right/left eye while the model's Face_3/Face_4 are the left/right eye; quirk "humandata_eye_swap"
# reproduces it.
HUMANDATA_137_MAPPING: np.ndarray = np.asarray(JOINT_IDX, dtype=np.int64)
ORIGINAL_HUMANDATA_137_MAPPING: np.ndarray = HUMANDATA_137_MAPPING.copy()
ORIGINAL_HUMANDATA_137_MAPPING[[67, 68]] = (56, 57)
assert len(HUMANDATA_137_MAPPING) == JOINT_NUM

BOX_ASPECT_RATIO = 0.75  # w / h of the 384 x 512 input crop; the original forces it on hand and face boxes too
# The preprocessed HumanData body boxes already carry x1.2 padding, so the original scales them by bbox_ratio * 0.833.
BODY_BOX_RATIO_FACTOR = 0.833

# SMPL-X right-hand mean pose (hands_meanr of the SMPL-X model files), 15 joints x axis-angle, finger order index,
# middle, pinky, ring, thumb. The left mean is its mirror (x, -y, -z). Used by the BEDLAM quirk when no body-model
# folder is given.
SMPLX_HANDS_MEAN_R = np.array([
    (0.11167871, -0.04289218, 0.41644183), (0.10881133, 0.06598568, 0.75622), (-0.09639297, 0.09091566, 0.18845929),
    (-0.11809504, -0.05094385, 0.5295845), (-0.14369841, -0.0552417, 0.7048571),
    (-0.01918292, 0.09233685, 0.3379135), (-0.45703298, 0.19628395, 0.6254575),
    (-0.21465237, 0.06599829, 0.50689423), (-0.36972436, 0.06034463, 0.07949023),
    (-0.1418697, 0.08585263, 0.63552827), (-0.3033416, 0.05788098, 0.6313892),
    (-0.17612089, 0.13209307, 0.37335458), (0.8509643, -0.27692273, 0.09154807),
    (-0.49983943, -0.02655647, -0.05288088), (0.5355592, -0.04596104, 0.27735803),
])
SMPLX_HANDS_MEAN_L = SMPLX_HANDS_MEAN_R * np.array([1.0, -1.0, -1.0])

GENDERS = ("neutral", "male", "female")
_GENDER_CODES = {"neutral": 0, "n": 0, "male": 1, "m": 1, "female": 2, "f": 2}
# Widths per sample of the SMPL-X parameters in an entry (axis-angle poses, betas, expression, metres).
SMPLX_PARAM_DIMS: dict[str, int] = {"root_pose": 3, "body_pose": 63, "lhand_pose": 45, "rhand_pose": 45,
                                    "jaw_pose": 3, "shape": SHAPE_PARAM_DIM, "expr": EXPR_PARAM_DIM, "trans": 3}
SMPLX_VALID_KEYS = ("lhand_valid", "rhand_valid", "face_valid")
ENTRY_KEYS = ("img_path", "img_shape", "bbox", "lhand_bbox", "rhand_bbox", "face_bbox", "joint_img", "joint_cam",
              "joint_valid", "smplx_param", "camera", "dataset", "index")
SKIP_REASONS = ("missing_img_shape", "invalid_bbox", "nonfinite_keypoints3d", "nonfinite_keypoints2d",
                "nonfinite_smplx")
CAMERA_SIZES = {"focal": (2,), "princpt": (2,), "R": (3, 3), "t": (3,)}

# ----------------------------------------------------------------------------------------------------------------
# Boxes
def process_bboxes(xywh: np.ndarray, img_w: np.ndarray, img_h: np.ndarray, aspect_ratio: float = BOX_ASPECT_RATIO,
                   ratio: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`common.utils.image.process_bbox` (same float64 arithmetic, float32 result).

    ``xywh`` (K, 4) px, ``img_w``/``img_h`` (K,) px. Returns (boxes (K, 4) float32 xywh, valid (K,) bool); rows that
    process_bbox rejects (degenerate or outside the image, or non-finite) are invalid and filled with NaN.
    """
    b = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    x, y, w, h = b.T
    img_w = np.broadcast_to(np.asarray(img_w, dtype=np.float64), x.shape)
    img_h = np.broadcast_to(np.asarray(img_h, dtype=np.float64), x.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        x1, y1 = np.maximum(0.0, x), np.maximum(0.0, y)
        x2 = np.minimum(img_w - 1.0, x1 + np.maximum(0.0, w - 1))
        y2 = np.minimum(img_h - 1.0, y1 + np.maximum(0.0, h - 1))
        valid = np.isfinite(b).all(axis=1) & (w * h > 0) & (x2 > x1) & (y2 > y1)
        bw, bh = x2 - x1, y2 - y1
        cx, cy = x1 + bw / 2.0, y1 + bh / 2.0
        wide, tall = bw > aspect_ratio * bh, bw < aspect_ratio * bh
        bh = np.where(wide, bw / aspect_ratio, bh)
        bw = np.where(tall, bh * aspect_ratio, bw)
        bw, bh = bw * ratio, bh * ratio
        out = np.stack([cx - bw / 2.0, cy - bh / 2.0, bw, bh], axis=1).astype(np.float32)
    out[~valid] = np.nan
    return out, valid


def _part_boxes(raw: np.ndarray, img_w: np.ndarray, img_h: np.ndarray, ratio: float) -> np.ndarray:
    """Hand/face boxes (K, 5) xywh+confidence -> (K, 4) float32 xyxy, NaN where absent (confidence <= 0) or
    invalid. As the original: the body aspect ratio 0.75 and ``bbox_ratio`` are applied to them."""
    boxes, valid = process_bboxes(raw[:, :4], img_w, img_h, BOX_ASPECT_RATIO, ratio)
    boxes[:, 2:] += boxes[:, :2]
    with np.errstate(invalid="ignore"):
        present = raw[:, 4] > 0
    boxes[~(valid & present)] = np.nan
    return boxes


# ----------------------------------------------------------------------------------------------------------------
# Keypoints
def _read_mask(npz: NpzReader, key: str) -> np.ndarray:
    m = np.asarray(npz.read(key), dtype=np.float64).reshape(-1)
    if not np.isin(m, (0.0, 1.0)).all():
        raise InputError(f"{npz.path}: '{key}' must hold 0/1 per keypoint, got values {np.unique(m)[:5]}")
    return m


def _dataset_mask(npz: NpzReader, key3d: str | None, key2d: str, mapping: np.ndarray) -> tuple[np.ndarray, str]:
    """Dataset-wide (137, 1) keypoint mask: the 3D key's mask (own, else generic), else the 2D key's, else ones."""
    candidates = ([f"{key3d}_mask", "keypoints3d_mask"] if key3d else []) + [f"{key2d}_mask", "keypoints2d_mask"]
    for mkey in candidates:
        if mkey in npz:
            m = _read_mask(npz, mkey)
            if mapping.max() >= len(m):
                raise InputError(f"{npz.path}: '{mkey}' has {len(m)} entries, at least {mapping.max() + 1} needed")
            return m[mapping].astype(np.float32).reshape(-1, 1), mkey
    return np.ones((len(mapping), 1), dtype=np.float32), "none (all keypoints valid)"


# ----------------------------------------------------------------------------------------------------------------
# SMPL-X parameters
def find_smplx_model(body_model_dir: str | Path) -> Path:
    """``<dir>/smplx/SMPLX_NEUTRAL.npz`` (project layout) or ``<dir>/SMPLX_NEUTRAL.npz``; BodyModelFilesMissing if
    neither exists."""
    base = Path(body_model_dir).absolute()
    for f in (base / "smplx" / "SMPLX_NEUTRAL.npz", base / "SMPLX_NEUTRAL.npz"):
        if f.is_file():
            return f
    raise BodyModelFilesMissing(f"SMPL-X model not found: neither {base / 'smplx' / 'SMPLX_NEUTRAL.npz'} nor "
                                f"{base / 'SMPLX_NEUTRAL.npz'} exists (needed for the BEDLAM hand means); put the "
                                "SMPL-X files there, or pass no body-model folder to use the built-in means")


def load_hand_means(model_file: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """SMPL-X hand mean poses (left, right), each (45,) axis-angle: ``hands_meanl``/``hands_meanr`` of an SMPL-X
    model ``.npz`` when given, else the built-in values of the SMPL-X model files."""
    if model_file is None:
        return SMPLX_HANDS_MEAN_L.reshape(-1).copy(), SMPLX_HANDS_MEAN_R.reshape(-1).copy()
    try:
        with np.load(model_file) as model:
            left = np.asarray(model["hands_meanl"], dtype=np.float64).reshape(-1)
            right = np.asarray(model["hands_meanr"], dtype=np.float64).reshape(-1)
    except _READ_ERRORS as err:
        raise BodyModelFilesMissing(f"{model_file}: cannot read hands_meanl/hands_meanr ({type(err).__name__}: "
                                    f"{err}); use the SMPL-X model file of the SMPL-X download") from err
    if left.shape != (45,) or right.shape != (45,):
        raise BodyModelFilesMissing(f"{model_file}: hands_meanl/hands_meanr must hold 45 values each, got "
                                    f"{left.shape}/{right.shape}")
    return left, right


def _quirk_talkshow(p: dict[str, np.ndarray | None]) -> None:
    """Talkshow stores more than 10 expression coefficients; keep the first 10. The right hand is kept as read (the
    original overwrote it with the left-hand pose)."""
    if p["expr"] is not None:
        p["expr"] = p["expr"][:, :EXPR_PARAM_DIM]


def _quirk_bedlam(p: dict[str, np.ndarray | None], hand_means: tuple[np.ndarray, np.ndarray]) -> None:
    """BEDLAM: 11 betas -> 10; hand poses are absolute (flat_hand_mean=True), our SMPL-X layer adds the hand mean
    (flat_hand_mean=False), so the mean is subtracted to turn them into offsets."""
    p["shape"] = p["shape"][:, :SHAPE_PARAM_DIM]
    if p["lhand_pose"] is not None:
        p["lhand_pose"] = (p["lhand_pose"] - hand_means[0]).astype(np.float32)
    if p["rhand_pose"] is not None:
        p["rhand_pose"] = (p["rhand_pose"] - hand_means[1]).astype(np.float32)


def _fit_width(a: np.ndarray, width: int) -> np.ndarray:
    """Truncate or zero-pad coefficient vectors (betas, expression) to ``width``: the leading PCA coefficients of
    a longer fit are the same shape space, so truncation is the standard way to use a 10-coefficient model."""
    if a.shape[1] >= width:
        return a[:, :width]
    return np.pad(a, ((0, 0), (0, width - a.shape[1])))


def _gender_codes(values: Any, rows: np.ndarray, n: int, where: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = np.broadcast_to(arr, (n,))
    if arr.shape[0] != n:
        raise InputError(f"{where}.gender has {arr.shape[0]} entries for {n} samples")
    arr = arr[rows]
    names, inverse = np.unique(arr.astype(str), return_inverse=True)
    codes = []
    for name in names:
        key = name.strip().lower()
        if key not in _GENDER_CODES:
            raise InputError(f"{where}.gender holds '{name}'; expected neutral/male/female (or n/m/f)")
        codes.append(_GENDER_CODES[key])
    return np.asarray(codes, dtype=np.int8)[inverse.reshape(-1)] if len(codes) else np.zeros(0, np.int8)


def _extract_params(raw: Mapping[str, Any], source: str, rows: np.ndarray, n: int, where: str,
                    quirks: frozenset[str], hand_means_file: str | None
                    ) -> tuple[dict[str, np.ndarray], dict[str, bool], dict[str, Any]]:
    """Per-row SMPL-X columns from a HumanData ``smplx``/``smpl``/``smplh`` dict (renames and fixes of facts 4.6).

    Returns (columns: name -> (K, width) float32 plus ``gender`` (K,) int8 codes, validity flags, notes for stats).
    """
    def col(key: str) -> np.ndarray:
        a = np.asarray(raw[key])
        if a.ndim == 0 or a.shape[0] != n:
            raise InputError(f"{where}.{key} has shape {a.shape}, expected one row per sample ({n})")
        return a[rows].reshape(len(rows), math.prod(a.shape[1:])).astype(np.float32)

    for key in ("global_orient", "body_pose"):
        if key not in raw:
            raise InputError(f"{where} has no '{key}' (keys: {', '.join(sorted(raw))})")
    k = len(rows)
    p: dict[str, np.ndarray | None] = {
        "root_pose": col("global_orient"), "body_pose": col("body_pose"),
        "shape": col("betas") if "betas" in raw else np.zeros((k, SHAPE_PARAM_DIM), np.float32),
        "trans": col("transl") if "transl" in raw else np.zeros((k, 3), np.float32),
        "lhand_pose": col("left_hand_pose") if "left_hand_pose" in raw else None,
        "rhand_pose": col("right_hand_pose") if "right_hand_pose" in raw else None,
        "jaw_pose": col("jaw_pose") if "jaw_pose" in raw else None,
        "expr": col("expression") if "expression" in raw else None,
    }
    notes: dict[str, Any] = {}
    neutral_betas = "betas_neutral" in raw
    if neutral_betas:  # betas refitted for the neutral model (the "_fix_betas" files)
        p["shape"] = col("betas_neutral")
        notes["betas"] = "betas_neutral"
    if "talkshow" in quirks:
        _quirk_talkshow(p)
    if "bedlam" in quirks:
        _quirk_bedlam(p, load_hand_means(hand_means_file))
        notes["hand_means"] = hand_means_file or "built-in SMPL-X values"
    if source in ("smpl", "smplh"):  # SMPL(-H) betas do not transfer to SMPL-X; SMPL's 23 body joints -> first 21
        p["shape"] = np.zeros((k, SHAPE_PARAM_DIM), np.float32)
        if source == "smpl" and p["body_pose"].shape[1] >= 63:
            p["body_pose"] = p["body_pose"][:, :63]
    # Face supervision needs both jaw and expression (the sample pipeline invalidates the face otherwise).
    flags = {"lhand_valid": p["lhand_pose"] is not None, "rhand_valid": p["rhand_pose"] is not None,
             "face_valid": p["expr"] is not None and p["jaw_pose"] is not None}
    for name, width in SMPLX_PARAM_DIMS.items():
        a = p[name]
        if a is None:
            p[name] = np.zeros((k, width), np.float32)
        elif name in ("shape", "expr"):
            if a.shape[1] != width:
                notes[name] = f"{a.shape[1]} coefficients -> {width}"
            p[name] = _fit_width(a, width)
        elif a.shape[1] != width:
            raise InputError(f"{where}: '{name}' has {a.shape[1]} values per sample, expected {width}"
                             + (" (PCA hand poses are not supported)" if "hand" in name else ""))
    cols: dict[str, np.ndarray] = {name: np.ascontiguousarray(p[name], dtype=np.float32) for name in SMPLX_PARAM_DIMS}
    if "gender" in raw and not neutral_betas:
        cols["gender"] = _gender_codes(raw["gender"], rows, n, where)
    else:  # no gender, or betas refitted for the neutral model: use the neutral model
        cols["gender"] = np.zeros(k, np.int8)
    return cols, flags, notes


# ----------------------------------------------------------------------------------------------------------------
# Options
@dataclass(frozen=True)
class ReaderOptions:
    """Everything besides the file that determines the records (also the datalist-cache key)."""

    name: str
    split: str
    sample_interval: int
    bbox_ratio: float
    img_shape: tuple[int, int] | None
    camera: tuple[tuple[str, tuple[float, ...]], ...]  # sorted (key, flat values) pairs
    quirks: tuple[str, ...]  # sorted
    params_required: bool
    body_model_file: str | None  # SMPL-X model used for hand means (BEDLAM), absolute

    def camera_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self.camera}


def resolve_options(name: str, *, split: str = "train", sample_interval: int = 1, bbox_ratio: float = 1.2,
                    img_shape: tuple[int, int] | None = None, camera: Mapping[str, Any] | None = None,
                    quirks: frozenset[str] | set[str] | tuple[str, ...] | None = None,
                    params_required: bool | None = None, body_model_dir: str | Path | None = None) -> ReaderOptions:
    """Fill ``None`` options from the catalog row of ``name`` (if it has one) and validate everything."""
    spec = CATALOG.get(name)
    if spec is not None and spec.loader != "humandata":
        raise ConfigError(f"dataset {name} is not a HumanData set (its loader is '{spec.loader}')")
    if img_shape is None and spec is not None:
        img_shape = spec.img_shape
    if camera is None:
        camera = spec.camera() if spec is not None else {}
    if quirks is None:
        quirks = spec.quirks if spec is not None else frozenset()
    if params_required is None:
        params_required = not (spec is not None and spec.params_optional)
    if isinstance(sample_interval, bool) or int(sample_interval) != sample_interval or sample_interval < 1:
        raise ConfigError(f"sample interval of {name} must be a positive integer, got {sample_interval!r}")
    if not (math.isfinite(bbox_ratio) and bbox_ratio > 0):
        raise ConfigError(f"bbox_ratio must be a positive number, got {bbox_ratio!r}")
    unknown = sorted(set(quirks) - set(QUIRKS))
    if unknown:
        raise ConfigError(f"unknown HumanData quirk(s) {unknown}; known: {', '.join(sorted(QUIRKS))}")
    cam: list[tuple[str, tuple[float, ...]]] = []
    for key, value in camera.items():
        if key not in CAMERA_SIZES:
            raise ConfigError(f"camera of {name}: unknown key '{key}' (use {', '.join(CAMERA_SIZES)})")
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != CAMERA_SIZES[key] and arr.size != math.prod(CAMERA_SIZES[key]):
            raise ConfigError(f"camera of {name}: '{key}' must have shape {CAMERA_SIZES[key]}, got {arr.shape}")
        cam.append((key, tuple(float(v) for v in arr.reshape(-1))))
    if img_shape is not None:
        if len(img_shape) != 2 or min(img_shape) <= 0:
            raise ConfigError(f"img_shape of {name} must be (height, width) > 0, got {img_shape!r}")
        img_shape = (int(img_shape[0]), int(img_shape[1]))
    # only the BEDLAM quirk reads the body model (its hand means)
    body_model_file = str(find_smplx_model(body_model_dir)) if body_model_dir is not None and "bedlam" in quirks \
        else None
    return ReaderOptions(name=name, split=split, sample_interval=int(sample_interval), bbox_ratio=float(bbox_ratio),
                         img_shape=img_shape, camera=tuple(sorted(cam)), quirks=tuple(sorted(quirks)),
                         params_required=bool(params_required), body_model_file=body_model_file)


# ----------------------------------------------------------------------------------------------------------------
# Records
@dataclass
class HumanDataRecords:
    """The usable rows of one HumanData file as column arrays (K = number of records).

    Boxes of absent hands/face are NaN rows. Image paths are stored UTF-8 encoded in one byte buffer with (K+1,)
    offsets, relative to ``img_dir``, so the image root can move without rebuilding a cache.
    """

    name: str
    split: str
    source: str  # absolute path of the annotation file
    img_dir: str  # absolute image root
    index: np.ndarray  # (K,) int64, row in the file
    path_bytes: np.ndarray  # (total,) uint8
    path_offsets: np.ndarray  # (K + 1,) int64
    img_shape: np.ndarray  # (K, 2) int32 (h, w) px
    bbox: np.ndarray  # (K, 4) float32 xywh px
    lhand_bbox: np.ndarray  # (K, 4) float32 xyxy px, NaN = absent
    rhand_bbox: np.ndarray
    face_bbox: np.ndarray
    joint_img: np.ndarray  # (K, 137, 3) float32: x, y px, confidence
    joint_cam: np.ndarray | None  # (K, 137, 3) float32 metres
    joint_valid: np.ndarray  # (137, 1) float32
    smplx: dict[str, np.ndarray] | None  # SMPLX_PARAM_DIMS columns (K, width) float32 + gender (K,) int8
    smplx_valid: dict[str, bool]  # lhand_valid, rhand_valid, face_valid
    camera: dict[str, list[float]]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows
    info: dict[str, Any] = field(default_factory=dict)  # file facts for stats() (JSON-able)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.entry(i)

    def image_path(self, i: int) -> str:
        o = self.path_offsets
        return os.path.join(self.img_dir, self.path_bytes[o[i]:o[i + 1]].tobytes().decode("utf-8"))

    def entry(self, i: int) -> dict[str, Any]:
        """Datalist entry of record ``i`` (fresh arrays: the caller may modify them)."""
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"record {i} out of range for {self.name} ({n} records)")
        i %= n
        h, w = self.img_shape[i]
        return {
            "img_path": self.image_path(i),
            "img_shape": (int(h), int(w)),
            "bbox": self.bbox[i].copy(),
            "lhand_bbox": _box_or_none(self.lhand_bbox[i]),
            "rhand_bbox": _box_or_none(self.rhand_bbox[i]),
            "face_bbox": _box_or_none(self.face_bbox[i]),
            "joint_img": self.joint_img[i].copy(),
            "joint_cam": None if self.joint_cam is None else self.joint_cam[i].copy(),
            "joint_valid": self.joint_valid.copy(),
            "smplx_param": self._smplx_param(i),
            "camera": {k: np.asarray(v, np.float32).reshape(CAMERA_SIZES[k]) for k, v in self.camera.items()},
            "dataset": self.name,
            "index": int(self.index[i]),
        }

    def _smplx_param(self, i: int) -> dict[str, Any] | None:
        if self.smplx is None:
            return None
        param: dict[str, Any] = {k: self.smplx[k][i].copy() for k in SMPLX_PARAM_DIMS}
        param.update(self.smplx_valid)
        param["gender"] = GENDERS[int(self.smplx["gender"][i])]
        return param

    def stats(self) -> dict[str, Any]:
        """Records, file keys with shapes, keypoint valid ratios, skipped rows by reason (JSON-able)."""
        k = len(self)
        valid = self.joint_valid[:, 0] > 0
        conf = float((self.joint_img[:, valid, 2] > 0).mean()) if k and valid.any() else None
        return {
            "name": self.name, "file": self.source, "split": self.split, "img_dir": self.img_dir,
            "rows_in_file": self.info.get("rows_in_file"), "sample_interval": self.info.get("sample_interval"),
            "rows_sampled": self.info.get("rows_sampled"), "records": k,
            "skipped": dict(self.skipped),
            "keys": self.info.get("keys", {}),
            "keypoints": {**self.info.get("keypoints", {}),
                          "joint_valid_137": float(valid.mean()),
                          "confidence_positive_ratio": conf},
            "smplx": None if self.smplx is None else {**self.info.get("smplx", {}), **self.smplx_valid},
            "boxes_present": {part: (float(np.isfinite(getattr(self, f"{part}_bbox")[:, 0]).mean()) if k else 0.0)
                              for part in ("lhand", "rhand", "face")},
            "camera": dict(self.camera),
        }

    # -- flat arrays for data/cache.py --------------------------------------------------------------------------
    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(numeric column arrays, JSON-able metadata); :meth:`from_arrays` inverts it."""
        arrays = {k: getattr(self, k) for k in ("index", "path_bytes", "path_offsets", "img_shape", "bbox",
                                                "lhand_bbox", "rhand_bbox", "face_bbox", "joint_img", "joint_valid")}
        if self.joint_cam is not None:
            arrays["joint_cam"] = self.joint_cam
        for k, v in (self.smplx or {}).items():
            arrays[f"smplx.{k}"] = v
        meta = {"name": self.name, "split": self.split, "source": self.source, "camera": self.camera,
                "smplx_valid": self.smplx_valid, "has_smplx": self.smplx is not None, "skipped": self.skipped,
                "info": self.info}
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], img_dir: str | Path
                    ) -> HumanDataRecords:
        smplx = {k[6:]: np.asarray(v) for k, v in arrays.items() if k.startswith("smplx.")} if meta["has_smplx"] \
            else None
        return cls(name=meta["name"], split=meta["split"], source=meta["source"], img_dir=os.path.abspath(img_dir),
                   joint_cam=np.asarray(arrays["joint_cam"]) if "joint_cam" in arrays else None, smplx=smplx,
                   smplx_valid=dict(meta["smplx_valid"]), camera=dict(meta["camera"]), skipped=dict(meta["skipped"]),
                   info=dict(meta["info"]),
                   **{k: np.asarray(arrays[k]) for k in ("index", "path_bytes", "path_offsets", "img_shape", "bbox",
                                                         "lhand_bbox", "rhand_bbox", "face_bbox", "joint_img",
                                                         "joint_valid")})


def _box_or_none(box: np.ndarray) -> np.ndarray | None:
    return None if np.isnan(box[0]) else box.copy()


class ConcatRecords:
    """Several :class:`HumanDataRecords` (the files of one dataset split) seen as one sequence of entries."""

    def __init__(self, parts: list[HumanDataRecords]) -> None:
        self.parts = list(parts)
        self._ends = np.cumsum([len(p) for p in self.parts], dtype=np.int64)

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.entry(i)

    def entry(self, i: int) -> dict[str, Any]:
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"record {i} out of range ({n} records)")
        i %= n
        part = int(np.searchsorted(self._ends, i, side="right"))
        return self.parts[part].entry(i - (int(self._ends[part - 1]) if part else 0))

    @property
    def skipped(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for p in self.parts:
            for reason, count in p.skipped.items():
                total[reason] = total.get(reason, 0) + count
        return total


# ----------------------------------------------------------------------------------------------------------------
# Loading
def load_humandata(path: str | Path, *, name: str, img_dir: str | Path, split: str = "train", sample_interval: int = 1,
                   bbox_ratio: float = 1.2, img_shape: tuple[int, int] | None = None,
                   camera: Mapping[str, Any] | None = None, quirks: frozenset[str] | set[str] | None = None,
                   params_required: bool | None = None, body_model_dir: str | Path | None = None
                   ) -> HumanDataRecords:
    """Read a HumanData ``.npz`` into records (see the module docstring for the entry schema).

    ``name``: catalog name; ``img_shape`` (h, w), ``camera``, ``quirks`` and ``params_required`` default to its
    catalog row (or to none / required for a name not in the catalog). Every ``sample_interval``-th row is kept
    (pass the split's interval). ``bbox_ratio``: body boxes are enlarged by ``bbox_ratio * 0.833``, hand and face
    boxes by ``bbox_ratio``. ``body_model_dir``: SMPL-X folder to read the hand means from (BEDLAM quirk).

    Raises InputError naming the file (and key) for a missing/corrupt file or missing required keys.
    """
    opts = resolve_options(name, split=split, sample_interval=sample_interval, bbox_ratio=bbox_ratio,
                           img_shape=img_shape, camera=camera, quirks=quirks, params_required=params_required,
                           body_model_dir=body_model_dir)
    return read_records(path, opts, img_dir)


def read_records(path: str | Path, opts: ReaderOptions, img_dir: str | Path) -> HumanDataRecords:
    """:func:`load_humandata` with options already resolved by :func:`resolve_options` (columns in memory; the
    reading itself is :func:`data.humandata_scan.scan_humandata`, shared with the datalist cache)."""
    from data.humandata_scan import MemoryColumns, scan_humandata

    sink = MemoryColumns()
    meta = scan_humandata(path, opts, sink)
    return HumanDataRecords.from_arrays(sink.finish(), meta, img_dir)


def _image_sizes(npz: NpzReader, n: int, rows: np.ndarray, fixed: tuple[int, int] | None
                 ) -> tuple[np.ndarray, np.ndarray, str]:
    """((K, 2) float (h, w) px with 1 where unknown, (K,) known, source): the file's meta, else the fixed size."""
    meta = npz.read("meta").item() if "meta" in npz else {}
    if not isinstance(meta, Mapping):
        raise InputError(f"{npz.path}: 'meta' must be a dict, got {type(meta).__name__}")
    if "height" in meta and "width" in meta:
        h = np.asarray(meta["height"], np.float64).reshape(-1)
        w = np.asarray(meta["width"], np.float64).reshape(-1)
        if not len(h) == len(w) == n:
            raise InputError(f"{npz.path}: meta height/width have {len(h)}/{len(w)} entries for {n} samples")
        hw, note = np.stack([h, w], axis=1)[rows], "meta height/width"
    elif fixed is not None:
        hw, note = np.tile(np.asarray(fixed, np.float64), (len(rows), 1)), f"catalog {fixed[0]}x{fixed[1]}"
    else:
        hw, note = np.full((len(rows), 2), np.nan), "none (no meta height/width and no catalog size)"
    ok = np.isfinite(hw).all(axis=1) & (hw > 0).all(axis=1)
    return np.where(ok[:, None], hw, 1.0), ok, note


def _part_box_columns(npz: NpzReader, n: int, rows: np.ndarray, hw: np.ndarray, ratio: float) -> dict[str, np.ndarray]:
    """``lhand_bbox``/``rhand_bbox``/``face_bbox`` columns (K, 4) xyxy, NaN where absent; hand boxes need both keys
    (as the original)."""
    hands = "lhand_bbox_xywh" in npz and "rhand_bbox_xywh" in npz
    boxes = {}
    for part in ("lhand", "rhand", "face"):
        key = f"{part}_bbox_xywh"
        if key in npz and (part == "face" or hands):
            npz.rows_of(key, n, min_cols=5)  # x, y, w, h, confidence
            boxes[f"{part}_bbox"] = _part_boxes(npz.read_rows(key, rows).astype(np.float64), hw[:, 1], hw[:, 0], ratio)
        else:
            boxes[f"{part}_bbox"] = np.full((len(rows), 4), np.nan, np.float32)
    return boxes


def _describe_keys(npz: NpzReader, expand: tuple[str | None, ...]) -> dict[str, str]:
    """'key' -> 'shape dtype' of every member; the dict members named in ``expand`` are listed by sub-key."""
    out: dict[str, str] = {}
    for key in sorted(npz.members):
        shape, _, dtype = npz.header(key)
        if not dtype.hasobject:
            out[key] = f"{shape} {dtype}"
            continue
        if key not in expand:
            out[key] = f"{shape} object"
            continue
        value = npz.read(key)
        value = value.item() if value.ndim == 0 else value
        if isinstance(value, Mapping):
            for sub, v in value.items():
                a = np.asarray(v) if not isinstance(v, str) else np.asarray([v])
                out[f"{key}.{sub}"] = f"{a.shape} {a.dtype}"
        else:
            out[key] = f"{shape} object"
    return out


def _mask_ratios(npz: NpzReader) -> dict[str, float]:
    """Fraction of valid keypoints in every ``*_mask`` of the file (the whole convention, not only the 137)."""
    out = {}
    for key in sorted(npz.members):
        if key.startswith("keypoints") and key.endswith("_mask"):
            m = np.asarray(npz.read(key), np.float64).reshape(-1)
            out[key[:-5]] = float((m > 0).mean()) if m.size else 0.0
    return out
