"""SMPL-X body model: joint sets, the SMPL-X layer, evaluation regressors, and licence-free stand-in files.

Exports are resolved lazily, so ``import common.body_model`` (or its ``joint_sets``) loads neither torch nor smplx
nor any file.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from common.body_model.smplx_model import EvalAssets, SMPLXLayer, check_body_model_files, load_eval_assets
    from common.body_model.synthetic import write_synthetic_body_models

_EXPORTS = {
    "SMPLXLayer": "common.body_model.smplx_model",
    "EvalAssets": "common.body_model.smplx_model",
    "check_body_model_files": "common.body_model.smplx_model",
    "load_eval_assets": "common.body_model.smplx_model",
    "write_synthetic_body_models": "common.body_model.synthetic",
}
__all__ = ["SMPLXLayer", "EvalAssets", "check_body_model_files", "load_eval_assets", "write_synthetic_body_models"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
