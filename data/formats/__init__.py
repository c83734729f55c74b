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

import hashlib
import importlib
import json
import logging
import pickle
from pathlib import Path

from common.errors import ConfigError
from data.formats.base import EntryRecords, EvalContext

log = logging.getLogger(__name__)
CACHE_FORMAT = 1  # bump when EntryRecords' layout changes

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
             bbox_ratio: float = 1.2, body_model_dir: str | Path | None = None, cache_dir: str | Path | None = None,
             use_cache: bool = True) -> EntryRecords:
    """The ``split`` of own-format dataset ``name`` (catalog spelling) as datalist entries.

    ``sample_interval`` defaults to the catalog's interval of the split. The entries are cached in
    ``<data_root>/cache/`` (or ``cache_dir``), keyed by the annotation files (path, size, modification time), the
    options and the loaders' source, written atomically; a stale or unreadable cache is rebuilt. (Parsing the
    COCO-WholeBody json alone takes minutes.) The cache is a pickle written by this code: keep the data folder
    writable only by people you trust, as for the annotation files themselves.
    """
    from common.paths import DATASET_DIR
    from data.catalog import get_spec, resolve_files

    spec = get_spec(name)
    interval = spec.interval(split) if sample_interval is None else int(sample_interval)
    files = resolve_files(spec, split, data_root)  # names every missing file before anything is read

    def build() -> EntryRecords:
        return _module(name).load(spec, split, data_root=data_root, sample_interval=interval, bbox_ratio=bbox_ratio,
                                  body_model_dir=body_model_dir)

    if not use_cache:
        return build()
    root = Path(DATASET_DIR if data_root is None else data_root)
    folder = Path(cache_dir) if cache_dir is not None else root / "cache"
    key = _cache_key(spec.name, split, interval, bbox_ratio, files)
    path = folder / f"{spec.name}_{split}_{key[:16]}.pkl"
    records = _read_cache(path, key)
    if records is not None:
        log.info("%s %s: %d records from cache %s", spec.name, split, len(records), path)
        return records
    records = build()
    try:
        from common.utils.io import atomic_open

        with atomic_open(path, "wb") as f:
            pickle.dump({"key": key, "records": records}, f, protocol=pickle.HIGHEST_PROTOCOL)
    except (OSError, pickle.PicklingError) as err:  # a read-only data folder must not stop training
        log.warning("cannot write datalist cache %s (%s); continuing without it", path, err)
    return records


def _cache_key(name: str, split: str, interval: int, bbox_ratio: float, files: list[Path]) -> str:
    h = hashlib.sha256(json.dumps([name, split, interval, bbox_ratio, CACHE_FORMAT]).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.absolute()}|{st.st_size}|{st.st_mtime_ns}".encode())
    for src in sorted(Path(__file__).parent.glob("*.py")):  # any loader change invalidates the caches
        h.update(src.read_bytes())
    return h.hexdigest()


def _read_cache(path: Path, key: str) -> EntryRecords | None:
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f)
        if obj.get("key") == key and isinstance(obj.get("records"), EntryRecords):
            return obj["records"]
        log.info("datalist cache %s is stale; rebuilding it", path)
    except Exception as err:  # noqa: BLE001 -- any unreadable cache is simply rebuilt
        log.warning("datalist cache %s is unreadable (%s: %s); rebuilding it", path, type(err).__name__, err)
    return None


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
