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
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import ConfigError
from data.formats.base import EntryRecords, EvalContext

if TYPE_CHECKING:
    from data.entry_columns import EntryColumns

log = logging.getLogger(__name__)
CACHE_FORMAT = 2  # bump when the cached entries change meaning (1: pickled EntryRecords)

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
             use_cache: bool = True, builder: bool | None = None, timeout: float | None = None
             ) -> EntryColumns | EntryRecords:
    """The ``split`` of own-format dataset ``name`` (catalog spelling) as datalist entries.

    ``sample_interval`` defaults to the catalog's interval of the split. The entries are cached as a mapped column
    store (data/entry_columns.py, no pickles) in ``<data_root>/cache/<name>_<split>_<options digest>.cols``
    (or under ``cache_dir``), keyed by the annotation files (path, size, modification time), the options and the
    loaders' source; a stale, half-written or damaged cache is rebuilt by the node's builder (``builder`` None:
    local rank 0) while the other ranks wait up to ``timeout`` s (data/cache_sync.py). Parsing the COCO-WholeBody
    json alone takes minutes. Returns :class:`data.entry_columns.EntryColumns` (or the loader's
    :class:`EntryRecords` when ``use_cache`` is False or the cache folder is not writable).
    """
    from common.paths import DATASET_DIR
    from data.cache_sync import open_or_build
    from data.catalog import get_spec, resolve_files
    from data.colstore import ColumnStore, StoreWriter
    from data.entry_columns import EntryColumns, encode_entries

    spec = get_spec(name)
    interval = spec.interval(split) if sample_interval is None else int(sample_interval)
    files = resolve_files(spec, split, data_root)  # names every missing file before anything is read
    module = _module(name)  # also registers the module's entry functions before a cache is opened

    def load() -> EntryRecords:
        return module.load(spec, split, data_root=data_root, sample_interval=interval, bbox_ratio=bbox_ratio,
                           body_model_dir=body_model_dir)

    if not use_cache:
        return load()
    root = Path(DATASET_DIR if data_root is None else data_root)
    folder = Path(cache_dir) if cache_dir is not None else root / "cache"
    key = _cache_key(spec.name, split, interval, bbox_ratio, files)
    options = hashlib.sha256(json.dumps([spec.name, split, interval, bbox_ratio,
                                         [str(f.absolute()) for f in files]]).encode()).hexdigest()[:12]
    path = folder / f"{spec.name}_{split}_{options}.cols"

    built = []

    def build():
        built.append(True)
        records = load()
        try:
            with StoreWriter(path, key) as writer:
                writer.commit(encode_entries(records, writer))
            store = ColumnStore.open(path, key)
        except OSError as err:  # a read-only data folder must not stop training
            log.warning("cannot write datalist cache %s (%s); continuing without it", path, err)
            return records
        return EntryColumns(store) if store is not None else records

    records = open_or_build(path, key, build, EntryColumns, builder=builder, timeout=timeout)
    log.info("%s %s: %d records %s cache %s", spec.name, split, len(records), "built into" if built else "from",
             path)
    return records


def _cache_key(name: str, split: str, interval: int, bbox_ratio: float, files: list[Path]) -> str:
    from data.colstore import STORE_FORMAT
    from data.entry_columns import ENTRY_FORMAT

    h = hashlib.sha256(json.dumps([name, split, interval, bbox_ratio, CACHE_FORMAT, STORE_FORMAT,
                                   ENTRY_FORMAT]).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.absolute()}|{st.st_size}|{st.st_mtime_ns}".encode())
    folder = Path(__file__).parent
    sources = [*sorted(folder.glob("*.py")), folder.parent / "entry_columns.py", folder.parent / "colstore.py"]
    for src in sources:  # any loader or cache-code change invalidates the caches
        h.update(src.read_bytes())
    return h.hexdigest()


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
