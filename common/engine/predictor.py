"""Inference: load a checkpoint, crop people from an image, run the network, express results in image pixels.

``load_model`` rebuilds the model from a checkpoint alone (its saved config, or the size detected from its
weights), optionally overridden by a config file. ``Predictor`` turns (image, person boxes) into per-person
SMPL-X parameters, meshes and cameras exactly like the original demo: box -> 3:4 aspect x1.25 -> 512x384 bilinear
crop of the float image -> /255 -> network (eval mode).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.config import Config, apply_overrides, config_from_dict, load_config, validate
from common.engine.checkpoint import detect_model_config, load_network_weights, network_state, read_checkpoint
from common.errors import InputError
from common.nets import SMPLerX
from common.utils.image import check_person_box, generate_patch_image, process_bbox

log = logging.getLogger(__name__)

INFERENCE_BBOX_RATIO = 1.25  # box enlargement of the original demo (training used 1.2)


def resolve_device(name: str | None) -> torch.device:
    """'cpu', 'cuda', 'cuda:1' or None (CUDA if available) -> torch.device; clear error if CUDA is absent."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return dev


def load_model(ckpt_path: str | Path, config: str | Path | None = None, overrides: tuple[str, ...] = (),
               body_model_dir: str | Path | None = None, device: str | torch.device = "cpu",
               precision: str = "fp32") -> tuple[SMPLerX, Config]:
    """Build SMPLer-X for inference from a checkpoint and load its weights strictly.

    ``ckpt_path``: a file, or a released checkpoint's name (``smpler_x_s32`` ...: ``pretrained_models/`` or the
    Hugging Face cache, see :mod:`common.engine.weights`). The file is memory-mapped: only the network's tensors are
    read (the released files also hold the optimiser state). Config precedence: ``config`` file if given; else the
    config saved in the checkpoint; else the defaults with the encoder size detected from the weights (the released
    checkpoints carry no config). ``precision``: 'fp32' (exact), 'bf16' or 'int8' (:mod:`common.nets.precision`).
    """
    from common.engine.weights import resolve_checkpoint

    ckpt_path = resolve_checkpoint(ckpt_path)
    ckpt = read_checkpoint(ckpt_path)
    state = network_state(ckpt, source=str(ckpt_path))
    if config is not None:
        cfg = load_config(config, overrides)
    else:
        if isinstance(ckpt.get("config"), dict):
            cfg = config_from_dict(ckpt["config"])
        else:
            cfg = Config()
            for key, value in detect_model_config(state, str(ckpt_path)).items():
                setattr(cfg.model, key, value)
        apply_overrides(cfg, overrides)
        validate(cfg)
    if body_model_dir is not None:
        cfg.paths.body_model_dir = str(body_model_dir)
    model = SMPLerX(cfg.model)
    load_network_weights(model, state, source=str(ckpt_path))
    del state, ckpt
    from common.body_model import SMPLXLayer
    from common.nets import body_model_dir as bm_dir

    model.attach_body_model(SMPLXLayer(bm_dir(cfg), gender="neutral"))
    model.eval().to(device)
    from common.nets.precision import set_precision

    set_precision(model, precision)
    return model, cfg


@dataclass
class PersonResult:
    """One person. Frames: ``vertices`` / ``transl`` in the camera frame (m); ``focal``/``princpt`` in px of the
    original image, so ``K @ (v)`` projects the mesh onto the original image."""

    bbox_input: np.ndarray  # (4,) xywh as given (px)
    bbox: np.ndarray  # (4,) xywh after aspect fix and x1.25 (px): the crop that was fed to the network
    focal: tuple[float, float]
    princpt: tuple[float, float]
    params: dict[str, np.ndarray]  # SMPL-X parameters in the original's npz layout (see PARAM_SHAPES)
    vertices: np.ndarray  # (10475, 3) m, mesh in the camera frame (= SMPL-X(params) incl. transl)
    outputs: dict[str, np.ndarray]  # every network output for this person (original test-mode keys)


# Layout of the saved npz files (the original demo's), all float32.
PARAM_SHAPES = {"global_orient": (1, 3), "body_pose": (21, 3), "left_hand_pose": (15, 3), "right_hand_pose": (15, 3),
                "jaw_pose": (1, 3), "leye_pose": (1, 3), "reye_pose": (1, 3), "betas": (1, 10),
                "expression": (1, 10), "transl": (1, 3)}


class Predictor:
    """``Predictor(model, cfg)(image, boxes) -> list[PersonResult]``; image float32 RGB (H, W, 3) in [0, 255]."""

    def __init__(self, model: SMPLerX, cfg: Config, batch_size: int = 8, bbox_ratio: float = INFERENCE_BBOX_RATIO):
        self.model = model
        self.cfg = cfg
        self.batch_size = batch_size
        self.bbox_ratio = bbox_ratio
        self.device = next(model.parameters()).device

    def crop(self, image: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
        """(crop (3, H, W) float32 in [0, 1], processed xywh box); InputError for unusable boxes."""
        h, w = image.shape[:2]
        m = self.cfg.model
        check_person_box(box, w, h)
        processed = process_bbox(box, w, h, aspect_ratio=m.input_img_shape[1] / m.input_img_shape[0],
                                 ratio=self.bbox_ratio)
        patch, _, _ = generate_patch_image(image, processed, 1.0, 0.0, False, m.input_img_shape)
        return patch.transpose(2, 0, 1) / 255.0, processed

    @torch.no_grad()
    def __call__(self, image: np.ndarray, boxes) -> list[PersonResult]:
        crops, processed = [], []
        for box in boxes:
            c, p = self.crop(image, box)
            crops.append(c)
            processed.append(p)
        results: list[PersonResult] = []
        for start in range(0, len(crops), self.batch_size):
            batch = torch.from_numpy(np.stack(crops[start: start + self.batch_size])).float().to(self.device)
            out = self.model(batch)  # in the model's precision (common.nets.precision)
            outs = {k: v.float().cpu().numpy() for k, v in out.to_dict().items()}
            for i in range(batch.shape[0]):
                j = start + i
                results.append(self.person_result(np.asarray(boxes[j], dtype=np.float64), processed[j],
                                            {k: v[i] for k, v in outs.items()}))
        return results

    def person_result(self, box_in: np.ndarray, box: np.ndarray, o: dict[str, np.ndarray]) -> PersonResult:
        """One person's result from its network outputs ``o`` (original test-mode keys, no batch axis), the given
        box and the processed crop box (both xywh px of the image)."""
        m = self.cfg.model
        ih, iw = m.input_body_shape
        focal = (m.focal[0] / iw * float(box[2]), m.focal[1] / ih * float(box[3]))
        princpt = (m.princpt[0] / iw * float(box[2]) + float(box[0]), m.princpt[1] / ih * float(box[3]) + float(box[1]))
        params = {
            "global_orient": o["smplx_root_pose"], "body_pose": o["smplx_body_pose"],
            "left_hand_pose": o["smplx_lhand_pose"], "right_hand_pose": o["smplx_rhand_pose"],
            "jaw_pose": o["smplx_jaw_pose"], "leye_pose": np.zeros(3, np.float32),
            "reye_pose": np.zeros(3, np.float32), "betas": o["smplx_shape"], "expression": o["smplx_expr"],
            "transl": o["cam_trans"],
        }
        params = {k: np.asarray(v, dtype=np.float32).reshape(PARAM_SHAPES[k]) for k, v in params.items()}
        return PersonResult(bbox_input=box_in, bbox=box, focal=focal, princpt=princpt, params=params,
                            vertices=o["smplx_mesh_cam"], outputs=o)


def project(vertices: np.ndarray, focal, princpt) -> np.ndarray:
    """(N, 3) camera-frame points (m) -> (N, 2) pixels with a pinhole camera (no distortion)."""
    z = vertices[:, 2:3]
    return vertices[:, :2] / z * np.asarray(focal) + np.asarray(princpt)
