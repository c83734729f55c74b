"""Shared pytest fixtures (CPU only)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def body_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder holding licence-free stand-in ``smplx/`` and ``smpl/`` files (official format), made once per session."""
    from common.body_model.synthetic import write_synthetic_body_models

    out = tmp_path_factory.mktemp("body_models")
    write_synthetic_body_models(out, seed=0, smpl=True)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An official-layout checkpoint of the tiny model's seeded initialisation, with its config (made once)."""
    import torch

    from common.config import config_to_dict, load_config
    from common.engine.checkpoint import network_checkpoint, save_checkpoint
    from common.nets import SMPLerX

    cfg = load_config("smpler_x_tiny")
    torch.manual_seed(0)
    model = SMPLerX(cfg.model)
    model.init_weights()
    return save_checkpoint({"network": network_checkpoint(model), "config": config_to_dict(cfg)},
                           tmp_path_factory.mktemp("tiny_ckpt") / "tiny.pth.tar")
