"""Loaders of the datasets with their own annotation formats (MSCOCO, MPII, Human36M, AGORA, UBody, PW3D, EHF).

Each module ``data/formats/<name>.py`` provides

* ``load(spec, split, *, data_root, sample_interval, bbox_ratio, body_model_dir) -> EntryRecords``: the split as
  datalist entries (the keys of data/sample.py, plus the optional ``gt`` / ``meta`` extras of
  :mod:`data.formats.base`); files are located with :func:`data.catalog.resolve_files`, so a missing download is
  reported with the expected layout before anything is read;
* optionally ``make_evaluator(split, ctx: EvalContext) -> Evaluator`` when the benchmark is not scored by the
  default :class:`common.engine.evaluator.WholeBodyEvaluator` (AGORA submissions, UBody visibility, 3DPW joints).

:func:`load_own` and :func:`evaluator_for` dispatch by catalog name; the modules are imported lazily.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from common.errors import ConfigError
from data.formats.base import EntryRecords, EvalContext

# catalog name -> module under data/formats/
MODULES: dict[str, str] = {
    "EHF": "data.formats.ehf",
    "PW3D": "data.formats.pw3d",
    "AGORA": "data.formats.agora",
    "UBody": "data.formats.ubody",
    "MSCOCO": "data.formats.mscoco",
    "MPII": "data.formats.mpii",
    "Human36M": "data.formats.human36m",
}


def _module(name: str):
    if name not in MODULES:
        raise ConfigError(f"dataset {name} has no own-format loader (known: {', '.join(sorted(MODULES))})")
    try:
        return importlib.import_module(MODULES[name])
    except ModuleNotFoundError as err:
        if err.name == MODULES[name]:
            raise ConfigError(f"the loader of {name} ({MODULES[name]}) is not implemented yet") from err
        raise


def load_own(name: str, split: str, *, data_root: str | Path | None = None, sample_interval: int | None = None,
             bbox_ratio: float = 1.2, body_model_dir: str | Path | None = None) -> EntryRecords:
    """The ``split`` of own-format dataset ``name`` (catalog spelling) as datalist entries.

    ``sample_interval`` defaults to the catalog's interval of the split.
    """
    from data.catalog import get_spec

    spec = get_spec(name)
    interval = spec.interval(split) if sample_interval is None else int(sample_interval)
    return _module(name).load(spec, split, data_root=data_root, sample_interval=interval, bbox_ratio=bbox_ratio,
                              body_model_dir=body_model_dir)


def evaluator_for(name: str, split: str, ctx: EvalContext):
    """The benchmark evaluator of ``name``'s ``split``: the module's ``make_evaluator`` or the 14 whole-body
    metrics against ``targets['smplx_mesh_cam']`` / the pseudo-GT mesh of the GT SMPL-X parameters."""
    from common.engine.evaluator import WholeBodyEvaluator

    if name in MODULES:
        make = getattr(_module(name), "make_evaluator", None)
        if make is not None:
            return make(split, ctx)
    return WholeBodyEvaluator(name, ctx.assets, body_model=ctx.body_model)


__all__ = ["EntryRecords", "EvalContext", "MODULES", "evaluator_for", "load_own"]
