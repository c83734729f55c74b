"""Networks. Public entry point: :func:`build_model`."""

from __future__ import annotations

from pathlib import Path

import torch

from common.config import Config
from common.nets.smpler_x import MODULE_NAMES, SMPLerX, SMPLerXOutput


def body_model_dir(cfg: Config) -> Path:
    """The folder holding ``smplx/`` for this config (``paths.body_model_dir`` or the default)."""
    from common import paths

    return Path(cfg.paths.body_model_dir) if cfg.paths.body_model_dir else paths.BODY_MODEL_DIR


def build_model(cfg: Config, body_model: bool = True, device: str | torch.device | None = None) -> SMPLerX:
    """Build SMPLer-X from a config.

    Args:
        cfg: the resolved config (``cfg.model`` sets the architecture).
        body_model: attach the neutral SMPL-X layer from ``cfg.paths.body_model_dir`` (needed for meshes and
            projected joints); raises :class:`common.errors.BodyModelFilesMissing` naming the missing files.
        device: where to put the model (default: CPU).
    Weights are the training initialisation (ViT init, head init); load a checkpoint with
    :func:`common.engine.checkpoint.load_network_weights`.
    """
    model = SMPLerX(cfg.model)
    model.init_weights()
    if body_model:
        from common.body_model import SMPLXLayer

        model.attach_body_model(SMPLXLayer(body_model_dir(cfg), gender="neutral"))
    if device is not None:
        model.to(device)
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (buffers and the body model excluded)."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODULE_NAMES", "SMPLerX", "SMPLerXOutput", "build_model", "body_model_dir", "count_parameters"]
