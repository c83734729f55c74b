"""The SMPL-X layer SMPLer-X uses, and the evaluation regressors and vertex subsets (facts sheet 1.1 and 1.5).

Frames and units: the body model's own frame, metres, y up, +x the subject's left, +z the subject's front
(rest pose). Poses are axis-angle vectors (axis times angle in radians); hand poses are offsets from the model's
mean hand pose (``flat_hand_mean=False``, as the original).

Files are looked up under ``model_dir`` (``--body-model-dir``, default ``common/utils/human_model_files``), which
holds ``smplx/`` (and ``smpl/``) exactly as in the original SMPLer-X.
"""

from __future__ import annotations

import functools
import pickle
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common import paths
from common.body_model import joint_sets as js
from common.errors import BodyModelFilesMissing
from common.utils.safe_pickle import UnsafePickleError, read_npy_header, safe_load, verify_npz

GENDERS = ("neutral", "male", "female")
SMPLX_MODEL_FILES = tuple(f"smplx/SMPLX_{g.upper()}.npz" for g in GENDERS)
SMPLX_AUX_FILES = ("smplx/SMPLX_to_J14.pkl", "smplx/MANO_SMPLX_vertex_ids.pkl", "smplx/SMPL-X__FLAME_vertex_ids.npy")
SMPL_MODEL_FILES = tuple(f"smpl/SMPL_{g.upper()}.pkl" for g in GENDERS)
# Keys the pip smplx package reads from an SMPL-X .npz (a file without them is not an SMPL-X model).
SMPLX_NPZ_KEYS = ("v_template", "f", "J_regressor", "weights", "kintree_table", "posedirs", "shapedirs",
                  "hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr", "lmk_faces_idx",
                  "lmk_bary_coords", "dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords")
# Errors that reading a damaged .npz / .pkl / .npy raises (numpy, zipfile, zlib, pickle).
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError, zipfile.BadZipFile,
                zlib.error, pickle.UnpicklingError, NotImplementedError)


# ----------------------------------------------------------------------------------------------------------------
# File checks
def _quick_problem(path: Path) -> str | None:
    """Why `path` cannot be used (cheap structural check, no full decompression), or None if it looks fine."""
    if not path.is_file():
        return "missing"
    try:
        if path.suffix == ".npz":
            with zipfile.ZipFile(path) as zf:  # a truncated zip has no central directory
                names = {n.removesuffix(".npy") for n in zf.namelist()}
            if path.name.startswith("SMPLX_"):
                lacking = [k for k in SMPLX_NPZ_KEYS if k not in names]
                if lacking:
                    return f"unreadable: not an SMPL-X model file (no {', '.join(lacking)})"
        elif path.suffix == ".pkl":
            with open(path, "rb") as fh:
                head = fh.read(2)
                fh.seek(-1, 2)
                tail = fh.read(1)
            if len(head) < 2 or tail != b".":  # every pickle ends with the STOP opcode
                return "unreadable: truncated or not a pickle"
        elif path.suffix == ".npy":
            with open(path, "rb") as fh:
                shape, _, dtype = read_npy_header(fh)
                need = fh.tell() + int(np.prod(shape)) * dtype.itemsize
            if path.stat().st_size < need:
                return "unreadable: truncated .npy"
    except _READ_ERRORS as err:
        return f"unreadable: {type(err).__name__}: {err}"
    return None


def _files_message(model_dir: Path, problems: dict[str, str]) -> str:
    """One-line message naming each problem file, the folder searched, and what to do."""
    listed = ", ".join(f"{name} ({why})" for name, why in problems.items())
    msg = (f"Body-model files missing or unreadable in {model_dir}: {listed}. "
           f"Download the SMPL-X model (SMPLX_NEUTRAL/MALE/FEMALE.npz) from {paths.SMPLX_DOWNLOAD_URL}; "
           "SMPLX_to_J14.pkl, MANO_SMPLX_vertex_ids.pkl and SMPL-X__FLAME_vertex_ids.npy come with the SMPL-X "
           "downloads (see the original SMPLer-X README) and go next to them in smplx/.")
    if any(name.startswith("smpl/") for name in problems):
        msg += f" Download SMPL (SMPL_NEUTRAL/MALE/FEMALE.pkl) from {paths.SMPL_DOWNLOAD_URL} into smpl/."
    msg += (" Pass --body-model-dir DIR with DIR the folder that holds smplx/ (default "
            "common/utils/human_model_files). For tests only, `python -m common.body_model.synthetic DIR` writes "
            "licence-free stand-ins (not a real body model).")
    return msg


def check_body_model_files(model_dir: str | Path, smpl: bool = False, *, only: Iterable[str] | None = None) -> None:
    """Raise :class:`BodyModelFilesMissing` naming every missing or unreadable body-model file.

    Checks the SMPL-X files (``smplx/SMPLX_{NEUTRAL,MALE,FEMALE}.npz``, ``SMPLX_to_J14.pkl``,
    ``MANO_SMPLX_vertex_ids.pkl``, ``SMPL-X__FLAME_vertex_ids.npy``), with ``smpl=True`` also
    ``smpl/SMPL_{NEUTRAL,MALE,FEMALE}.pkl``; ``only`` restricts the check to the given relative paths. The check
    is structural (zip directory, pickle end marker, npy size), so it is fast; a file damaged inside still fails
    with the same kind of message when it is loaded.
    """
    model_dir = Path(model_dir).expanduser().resolve()
    if only is not None:
        names = list(only)
    else:
        names = [*SMPLX_MODEL_FILES, *SMPLX_AUX_FILES, *(SMPL_MODEL_FILES if smpl else ())]
    problems = {n: why for n in names if (why := _quick_problem(model_dir / n)) is not None}
    if problems:
        raise BodyModelFilesMissing(_files_message(model_dir, problems))


def _unreadable(model_dir: Path, name: str, err: BaseException) -> BodyModelFilesMissing:
    return BodyModelFilesMissing(_files_message(model_dir, {name: f"unreadable: {type(err).__name__}: {err}"}))


# ----------------------------------------------------------------------------------------------------------------
# SMPL-X layer
class SMPLXLayer(nn.Module):
    """SMPL-X as SMPLer-X uses it: pip ``smplx`` with ``use_pca=False``, ``use_face_contour=True``,
    ``flat_hand_mean=False``, 10 betas, 10 expression coefficients, ``.npz`` files, no learnable parameters.

    Attributes: ``faces`` (20908, 3) int64 numpy, ``vertex_num`` = 10475, ``gender``. The buffers follow
    ``.to(device, dtype)``; float32 and float64 both work.
    """

    vertex_num = js.SMPLX_VERTEX_NUM

    def __init__(self, model_dir: str | Path = paths.BODY_MODEL_DIR, gender: str = "neutral") -> None:
        super().__init__()
        import smplx  # deferred: importing the package must stay light

        if gender not in GENDERS:
            raise ValueError(f"gender must be one of {GENDERS}, got {gender!r}")
        model_dir = Path(model_dir).expanduser().resolve()
        name = f"smplx/SMPLX_{gender.upper()}.npz"
        check_body_model_files(model_dir, only=[name])
        try:
            verify_npz(model_dir / name)  # smplx unpickles the file's dict members: make sure they are plain data
            self.model = smplx.create(
                str(model_dir), "smplx", gender=gender, use_pca=False, use_face_contour=True, flat_hand_mean=False,
                num_betas=js.SHAPE_PARAM_DIM, num_expression_coeffs=js.EXPR_PARAM_DIM, ext="npz",
                create_global_orient=False, create_body_pose=False, create_left_hand_pose=False,
                create_right_hand_pose=False, create_jaw_pose=False, create_leye_pose=False, create_reye_pose=False,
                create_betas=False, create_expression=False, create_transl=False)
        except _READ_ERRORS as err:
            raise _unreadable(model_dir, name, err) from err
        self.gender = gender
        self.model_dir = model_dir
        self.faces = np.asarray(self.model.faces, dtype=np.int64)
        if self.model.v_template.shape[0] != self.vertex_num or self.faces.shape != (js.SMPLX_FACE_NUM, 3):
            raise BodyModelFilesMissing(_files_message(model_dir, {
                name: f"unreadable: {self.model.v_template.shape[0]} vertices / {len(self.faces)} faces, "
                      f"expected {self.vertex_num} / {js.SMPLX_FACE_NUM} (not an SMPL-X model)"}))

    def forward(self, root_pose: torch.Tensor, body_pose: torch.Tensor, lhand_pose: torch.Tensor,
                rhand_pose: torch.Tensor, jaw_pose: torch.Tensor, betas: torch.Tensor, expr: torch.Tensor,
                transl: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posed mesh and joints in the body-model frame (metres), plus `transl` when given.

        Inputs (axis-angle, radians): root_pose (B, 3) about the pelvis; body_pose (B, 63) joints 1-21;
        lhand_pose / rhand_pose (B, 45) offsets from the mean hand pose, SMPL-X finger order; jaw_pose (B, 3);
        betas (B, 10); expr (B, 10); transl (B, 3) or None. They are cast to the layer's dtype (move the layer with
        ``.to(torch.float64)`` for double precision) and must be on its device. Eye poses are zero.

        Returns vertices (B, 10475, 3) and joints (B, 144, 3): 55 kinematic joints, 21 vertex-picked extras,
        51 face landmarks, 17 face-contour landmarks (facts sheet 1.1).
        """
        args = {"root_pose": (root_pose, 3), "body_pose": (body_pose, 63), "lhand_pose": (lhand_pose, 45),
                "rhand_pose": (rhand_pose, 45), "jaw_pose": (jaw_pose, 3), "betas": (betas, js.SHAPE_PARAM_DIM),
                "expr": (expr, js.EXPR_PARAM_DIM)}
        if transl is not None:
            args["transl"] = (transl, 3)
        batch = root_pose.shape[0]
        for key, (x, dim) in args.items():
            if x.dim() != 2 or x.shape != (batch, dim):
                raise ValueError(f"{key} must have shape ({batch}, {dim}), got {tuple(x.shape)}")
        ref = self.model.v_template
        x = {k: v.to(dtype=ref.dtype) for k, (v, _) in args.items()}
        if batch == 0:  # smplx divides by the batch size; an empty batch gives empty outputs
            return ref.new_zeros(0, self.vertex_num, 3), ref.new_zeros(0, js.LAYER_JOINT_NUM, 3)
        eyes = torch.zeros_like(x["jaw_pose"])
        out = self.model(global_orient=x["root_pose"], body_pose=x["body_pose"], left_hand_pose=x["lhand_pose"],
                         right_hand_pose=x["rhand_pose"], jaw_pose=x["jaw_pose"], leye_pose=eyes, reye_pose=eyes,
                         betas=x["betas"], expression=x["expr"], transl=x.get("transl"), return_shaped=False)
        return out.vertices, out.joints


def load_smpl_layer(model_dir: str | Path, gender: str = "neutral") -> nn.Module:
    """The pip ``smplx`` SMPL layer of ``<model_dir>/smpl/SMPL_<GENDER>.pkl``, its pickle read with the allow-list
    (:func:`common.utils.safe_pickle.safe_load`: numpy arrays and the scipy.sparse ``J_regressor``), so a crafted
    file cannot run code. Files that still hold ``chumpy`` objects (SMPL 1.0) are refused with the fix."""
    import smplx
    from smplx.utils import Struct

    model_dir = Path(model_dir).expanduser().resolve()
    name = f"smpl/SMPL_{gender.upper()}.pkl"
    check_body_model_files(model_dir, smpl=True, only=[name])
    try:
        with open(model_dir / name, "rb") as fh:
            data = safe_load(fh, sparse=True)
        if not isinstance(data, dict):
            raise ValueError(f"holds a {type(data).__name__}, not the SMPL model dict")
    except UnsafePickleError as err:
        hint = (" It holds chumpy objects (SMPL 1.0 files): save its arrays as plain numpy arrays first (e.g. the "
                "smplx package's tools/clean_ch.py) or download SMPL 1.1") if "chumpy" in str(err) else ""
        raise _unreadable(model_dir, name, ValueError(f"{err}.{hint}")) from None
    except _READ_ERRORS as err:
        raise _unreadable(model_dir, name, err) from err
    return smplx.SMPL(str(model_dir / "smpl"), data_struct=Struct(**data), gender=gender)


# ----------------------------------------------------------------------------------------------------------------
# Evaluation assets
@dataclass(frozen=True)
class EvalAssets:
    """Regressors and vertex subsets for the metrics (read-only arrays).

    j14_regressor (14, 10475) float32, LSP order; hand_vertex_idx {'left', 'right'}: (778,) int64 (MANO
    vertices); face_vertex_idx (5023,) int64 (FLAME vertices); j_regressor (55, 10475) float32 of the neutral
    model; hand_regressors {'left', 'right'}: (21, 10475) float32, rows wrist, thumb 1-3 + tip, index, middle,
    ring, pinky (facts sheet 1.5).
    """

    j14_regressor: np.ndarray
    hand_vertex_idx: dict[str, np.ndarray]
    face_vertex_idx: np.ndarray
    j_regressor: np.ndarray
    hand_regressors: dict[str, np.ndarray]


def build_hand_regressor(j_regressor: np.ndarray, rows: Sequence) -> np.ndarray:
    """(len(rows), V) regressor: an int row copies that J_regressor row, ("v", i) is one-hot on vertex i."""
    out = np.zeros((len(rows), j_regressor.shape[1]), np.float32)
    for r, spec in enumerate(rows):
        if isinstance(spec, tuple):
            out[r, spec[1]] = 1.0
        else:
            out[r] = j_regressor[spec]
    return out


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False  # cached and shared: guard against in-place edits by callers
    return a


def load_eval_assets(model_dir: str | Path = paths.BODY_MODEL_DIR) -> EvalAssets:
    """Load (once per absolute folder) the evaluation regressors and vertex subsets; see :class:`EvalAssets`."""
    return _load_eval_assets(Path(model_dir).expanduser().resolve())


@functools.lru_cache(maxsize=4)
def _load_eval_assets(model_dir: Path) -> EvalAssets:
    names = ["smplx/SMPLX_NEUTRAL.npz", *SMPLX_AUX_FILES]
    check_body_model_files(model_dir, only=names)
    current = names[0]
    try:
        with np.load(model_dir / current) as npz:
            j_reg = np.asarray(npz["J_regressor"], np.float32)
        current = names[1]
        with open(model_dir / current, "rb") as fh:
            j14 = np.asarray(safe_load(fh, sparse=True), np.float32)
        current = names[2]
        with open(model_dir / current, "rb") as fh:
            mano = safe_load(fh)
        hand_idx = {side: np.asarray(mano[f"{side}_hand"], np.int64) for side in ("left", "right")}
        current = names[3]
        face_idx = np.asarray(np.load(model_dir / current), np.int64)
    except _READ_ERRORS as err:
        raise _unreadable(model_dir, current, err) from err
    expected = {"J_regressor": (j_reg.shape, (55, js.SMPLX_VERTEX_NUM)), "J14": (j14.shape, (14, js.SMPLX_VERTEX_NUM)),
                "left_hand": (hand_idx["left"].shape, (778,)), "right_hand": (hand_idx["right"].shape, (778,)),
                "FLAME ids": (face_idx.shape, (5023,))}
    bad = {k: v for k, v in expected.items() if v[0] != v[1]}
    if bad:
        raise BodyModelFilesMissing(_files_message(model_dir, {
            "smplx/": "unexpected shapes " + ", ".join(f"{k} {a} (expected {b})" for k, (a, b) in bad.items())}))
    hand_regs = {side: _read_only(build_hand_regressor(j_reg, js.HAND_REGRESSOR_ROWS[side])) for side in hand_idx}
    return EvalAssets(j14_regressor=_read_only(j14), hand_vertex_idx={k: _read_only(v) for k, v in hand_idx.items()},
                      face_vertex_idx=_read_only(face_idx), j_regressor=_read_only(j_reg), hand_regressors=hand_regs)
