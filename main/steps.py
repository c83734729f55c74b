"""The pieces ``main.train`` plugs into the Trainer: the model with its initialisation, and the training step."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from common import paths
from common.config import Config
from common.errors import CheckpointError

log = logging.getLogger(__name__)


def _repo_path(p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() else paths.REPO_ROOT / q


def build_training_model(cfg: Config, device: torch.device):
    """(model with the neutral SMPL-X layer attached, {gender: SMPLXLayer} for target building), on ``device``.

    Initialisation as the original: ViTPose encoder (``paths.encoder_pretrained``) and the heads' own init; or,
    for fine-tuning, all weights from ``paths.pretrained_model`` (a released SMPLer-X checkpoint, loaded strictly).
    """
    from common.body_model import SMPLXLayer
    from common.engine.checkpoint import load_network_weights, load_vitpose_encoder, network_state, read_checkpoint
    from common.nets import body_model_dir, build_model

    model = build_model(cfg, body_model=True)
    if cfg.paths.pretrained_model:
        path = _repo_path(cfg.paths.pretrained_model)
        load_network_weights(model, network_state(read_checkpoint(path), str(path)), str(path))
        log.info("initialised every weight from %s", path)
    elif cfg.paths.encoder_pretrained:
        path = _repo_path(cfg.paths.encoder_pretrained)
        if not path.is_file():
            raise CheckpointError(f"encoder weights {path} not found: download vitpose_*.pth (pretrained_models/"
                                  "README.md) or train from a random encoder with paths.encoder_pretrained=''")
        load_vitpose_encoder(model, path)
    else:
        log.warning("no paths.encoder_pretrained: the encoder starts from random weights")
    bm_dir = body_model_dir(cfg)
    model.to(device)
    # the neutral layer is the model's own (already loaded); targets also use the gendered ones
    body_models = {"neutral": model.body_model,
                   **{g: SMPLXLayer(bm_dir, gender=g).to(device) for g in ("male", "female")}}
    return model, body_models


def smplerx_step(cfg: Config, body_models: dict) -> Callable:
    """``step(model, batch, device) -> loss terms``: model-dependent targets on the device, forward, losses."""
    from common.nets.losses import compute_losses
    from data.targets import build_model_targets

    def step(model, batch, device):
        inputs, targets, meta = (_to(part, device) for part in batch)
        targets, meta = build_model_targets(targets, meta, body_models, cfg.model)
        out = model(inputs["img"])
        return compute_losses(out, targets, meta, cfg.model, cfg.train)

    return step


def _to(d: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in d.items()}
