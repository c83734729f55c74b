"""Datalist cache: the columns of a :class:`~data.humandata.HumanDataRecords` in one ``.npz`` (no pickles).

Reading a large HumanData file (decompressing keypoints, unpickling the parameter dict) takes minutes; the cache
holds only the rows and columns the records keep, so it loads in seconds.

* **Key.** A cache is valid only for the exact inputs that produced it: the annotation file (absolute path, size,
  modification time), the reader options (split, sample interval, bbox ratio, image size, camera, quirks, SMPL-X
  model file and its size/time for the BEDLAM hand means) and the reader and cache-format versions. The key is
  stored inside the file; a mismatch (stale) or an unreadable file (corrupt) makes :func:`load_or_build` rebuild.
* **Name.** ``<cache_dir>/<name>_<split>_<annotation stem>_<options digest>.npz``: caches of different options
  coexist, while a changed annotation file or a new reader version overwrites its own cache.
* **Image paths** are stored relative to the image root, which is supplied on load: moving ``dataset/`` does not
  invalidate a cache (the original baked absolute paths in).
* Files are written atomically, so concurrent ranks building the same cache and interrupted runs are safe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import ConfigError
from common.paths import DATASET_DIR
from common.utils.io import atomic_open
from data.catalog import get_spec, resolve_files, resolve_img_dir
from data.humandata import READER_VERSION, ConcatRecords, HumanDataRecords, ReaderOptions, read_records, resolve_options

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # layout of the cache file; bump when to_arrays/from_arrays change
DEFAULT_CACHE_DIR = DATASET_DIR / "cache"
_KEY, _META = "__cache_key__", "__cache_meta__"
_LOAD_ERRORS = (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, zlib.error,
                json.JSONDecodeError)


def _digest(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def _stat(path: str | Path) -> dict[str, int] | None:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cache_key(annot_path: str | Path, opts: ReaderOptions) -> str:
    """Hex digest of everything that determines the records of ``annot_path`` read with ``opts``."""
    payload = {"file": str(Path(annot_path).absolute()), "stat": _stat(annot_path), "options": dataclasses.asdict(opts),
               "reader": READER_VERSION, "format": CACHE_FORMAT}
    if opts.body_model_file is not None:
        payload["body_model_stat"] = _stat(opts.body_model_file)
    return _digest(payload)


def cache_path(annot_path: str | Path, opts: ReaderOptions, cache_dir: str | Path | None = None) -> Path:
    """Where the cache of ``annot_path`` with ``opts`` lives (see the module docstring for the name)."""
    options = _digest({"file": str(Path(annot_path).absolute()), "options": dataclasses.asdict(opts)})[:12]
    folder = Path(DEFAULT_CACHE_DIR if cache_dir is None else cache_dir)
    return folder / f"{opts.name}_{opts.split}_{Path(annot_path).stem}_{options}.npz"


def save_records(path: str | Path, records: HumanDataRecords, key: str) -> Path:
    """Write ``records`` and their ``key`` to ``path`` atomically (plain arrays, loadable without pickle)."""
    arrays, meta = records.to_arrays()
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays, **{_KEY: np.array(key), _META: np.array(json.dumps(meta))})
    return Path(path)


def load_records(path: str | Path, key: str, img_dir: str | Path) -> HumanDataRecords | None:
    """The cached records if ``path`` exists, is readable and was written with ``key``; None otherwise."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z[_KEY]) != key:
                log.info("datalist cache %s is stale; rebuilding it", path)
                return None
            meta = json.loads(str(z[_META]))
            arrays = {k: z[k] for k in z.files if k not in (_KEY, _META)}
        return HumanDataRecords.from_arrays(arrays, meta, img_dir)
    except _LOAD_ERRORS as err:
        log.warning("datalist cache %s is unreadable (%s: %s); rebuilding it", path, type(err).__name__, err)
        return None


def load_or_build(path: str | Path, *, name: str, img_dir: str | Path, split: str = "train", sample_interval: int = 1,
                  bbox_ratio: float = 1.2, img_shape: tuple[int, int] | None = None,
                  camera: Mapping[str, Any] | None = None, quirks: frozenset[str] | set[str] | None = None,
                  params_required: bool | None = None, body_model_dir: str | Path | None = None,
                  cache_dir: str | Path | None = None, use_cache: bool = True) -> HumanDataRecords:
    """:func:`data.humandata.load_humandata` through the cache (same arguments; ``cache_dir`` default
    ``dataset/cache``). A missing, stale or corrupt cache is rebuilt from the annotation file and rewritten."""
    opts = resolve_options(name, split=split, sample_interval=sample_interval, bbox_ratio=bbox_ratio,
                           img_shape=img_shape, camera=camera, quirks=quirks, params_required=params_required,
                           body_model_dir=body_model_dir)
    path = Path(path).absolute()
    if not use_cache:
        return read_records(path, opts, img_dir)
    key = cache_key(path, opts)
    where = cache_path(path, opts, cache_dir)
    records = load_records(where, key, img_dir)
    if records is not None:
        log.info("%s %s: %d records from cache %s", name, split, len(records), where)
        return records
    records = read_records(path, opts, img_dir)
    try:
        save_records(where, records, key)
    except OSError as err:  # a read-only data folder must not stop training; the next run just rebuilds
        log.warning("cannot write datalist cache %s (%s); continuing without it", where, err)
    return records


def load_dataset(name: str, split: str = "train", *, data_root: str | Path | None = None,
                 sample_interval: int | None = None, bbox_ratio: float = 1.2,
                 body_model_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                 use_cache: bool = True) -> ConcatRecords:
    """All annotation files of catalog dataset ``name``'s ``split`` as one sequence of datalist entries.

    ``sample_interval`` defaults to the catalog's interval for the split; the cache lives in
    ``<data_root>/cache`` unless ``cache_dir`` is given. Raises ConfigError for a dataset that is not HumanData and
    :class:`data.catalog.DatasetFilesMissing` naming every missing file.
    """
    spec = get_spec(name)
    if spec.loader != "humandata":
        raise ConfigError(f"dataset {name} has its own loader, not HumanData; load it with its module")
    files = resolve_files(spec, split, data_root)
    img_dir = resolve_img_dir(spec, data_root)
    root = Path(DATASET_DIR if data_root is None else data_root)
    interval = spec.interval(split) if sample_interval is None else sample_interval
    return ConcatRecords([
        load_or_build(f, name=name, img_dir=img_dir, split=split, sample_interval=interval, bbox_ratio=bbox_ratio,
                      body_model_dir=body_model_dir, cache_dir=root / "cache" if cache_dir is None else cache_dir,
                      use_cache=use_cache)
        for f in files])
