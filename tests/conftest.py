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
