"""Datalist cache of HumanData files: the columns of a :class:`~data.humandata.HumanDataRecords` in a column
store (data/colstore.py) that every process of a node maps instead of reading.

Reading a large HumanData file (decompressing keypoints, unpickling the parameter dict) takes a minute per million
rows; the cache holds only the rows and columns the records keep, as ``.npy`` files opened with memory mapping, so
a warm start takes milliseconds and all ranks and data-loader workers of a node share one copy of the pages.

* **Key.** A cache is valid only for the exact inputs that produced it: the annotation file (absolute path, size,
  modification time), the reader options (split, sample interval, bbox ratio, image size, camera, quirks, SMPL-X
  model file and its size/time for the BEDLAM hand means), the reader and cache-format versions and the source of
  the reader modules. The key is the store's ``COMPLETE`` marker; a mismatch (stale), a missing marker (half
  written) or unreadable files (damaged) make the builder rebuild it.
* **Name.** ``<cache_dir>/<name>_<split>_<annotation stem>_<options digest>.cols/``: caches of different options
  coexist, while a changed annotation file or new reader code replaces its own cache.
* **Image paths** are stored relative to the image root, which is supplied on load: moving ``dataset/`` does not
  invalidate a cache (the original baked absolute paths in).
* **One builder per node** (data/cache_sync.py): local rank 0 builds, the other ranks wait for the marker.
  The build streams the keypoint columns to disk (data/humandata_scan.py): its memory peak stays below the
  cache's size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from common.errors import ConfigError
from common.paths import DATASET_DIR
from data.cache_sync import open_or_build
from data.catalog import get_spec, resolve_files, resolve_img_dir
from data.colstore import ColumnStore, StoreWriter
from data.humandata import READER_VERSION, ConcatRecords, HumanDataRecords, ReaderOptions, read_records, resolve_options
from data.humandata_scan import scan_humandata

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # 1: one .npz per file (read into memory); 2: mapped column store
DEFAULT_CACHE_DIR = DATASET_DIR / "cache"
_READER_SOURCES = ("humandata.py", "humandata_scan.py", "npz_reader.py", "colstore.py")


def _digest(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def _stat(path: str | Path) -> dict[str, int] | None:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


@lru_cache(maxsize=1)
def reader_source_digest() -> str:
    """Digest of the reader modules' source: a code change rebuilds the caches (READER_VERSION remains for
    changes of meaning)."""
    h = hashlib.sha256()
    for name in _READER_SOURCES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()


def cache_key(annot_path: str | Path, opts: ReaderOptions) -> str:
    """Hex digest of everything that determines the records of ``annot_path`` read with ``opts``."""
    payload = {"file": str(Path(annot_path).absolute()), "stat": _stat(annot_path), "options": dataclasses.asdict(opts),
               "reader": READER_VERSION, "format": CACHE_FORMAT, "source": reader_source_digest()}
    if opts.body_model_file is not None:
        payload["body_model_stat"] = _stat(opts.body_model_file)
    return _digest(payload)


def cache_path(annot_path: str | Path, opts: ReaderOptions, cache_dir: str | Path | None = None) -> Path:
    """Where the cache of ``annot_path`` with ``opts`` lives (see the module docstring for the name)."""
    options = _digest({"file": str(Path(annot_path).absolute()), "options": dataclasses.asdict(opts)})[:12]
    folder = Path(DEFAULT_CACHE_DIR if cache_dir is None else cache_dir)
    return folder / f"{opts.name}_{opts.split}_{Path(annot_path).stem}_{options}.cols"


class MappedRecords(HumanDataRecords):
    """:class:`HumanDataRecords` whose columns are the mapped files of a cache; pickles as its path (a spawned
    data-loader worker maps the same files instead of receiving a copy)."""

    store: ColumnStore

    def __reduce__(self):
        return (records_from_store, (self.store, self.img_dir))


def records_from_store(store: ColumnStore, img_dir: str | Path) -> MappedRecords:
    """The records of an opened cache, re-rooted at ``img_dir`` (no data is read: the columns stay mapped)."""
    arrays = {name: store[name] for name in store.names}
    base = HumanDataRecords.from_arrays(arrays, store.meta, img_dir)
    records = MappedRecords(**{f.name: getattr(base, f.name) for f in dataclasses.fields(HumanDataRecords)})
    records.store = store
    return records


def build_store(annot_path: str | Path, opts: ReaderOptions, where: str | Path, key: str) -> ColumnStore:
    """Read ``annot_path`` with ``opts`` straight into a new cache at ``where`` (atomically) and open it."""
    with StoreWriter(where, key) as writer:
        meta = scan_humandata(annot_path, opts, writer)
        writer.commit(meta)
    store = ColumnStore.open(where, key)
    if store is None:
        raise OSError(f"datalist cache {where} vanished right after it was written")
    return store


def load_or_build(path: str | Path, *, name: str, img_dir: str | Path, split: str = "train", sample_interval: int = 1,
                  bbox_ratio: float = 1.2, img_shape: tuple[int, int] | None = None,
                  camera: Mapping[str, Any] | None = None, quirks: frozenset[str] | set[str] | None = None,
                  params_required: bool | None = None, body_model_dir: str | Path | None = None,
                  cache_dir: str | Path | None = None, use_cache: bool = True, builder: bool | None = None,
                  timeout: float | None = None) -> HumanDataRecords:
    """:func:`data.humandata.load_humandata` through the cache (same arguments; ``cache_dir`` default
    ``dataset/cache``). A missing, stale, half-written or damaged cache is rebuilt by the builder (``builder``:
    None = local rank 0) while the other ranks wait up to ``timeout`` s (data/cache_sync.py)."""
    opts = resolve_options(name, split=split, sample_interval=sample_interval, bbox_ratio=bbox_ratio,
                           img_shape=img_shape, camera=camera, quirks=quirks, params_required=params_required,
                           body_model_dir=body_model_dir)
    path = Path(path).absolute()
    if not use_cache:
        return read_records(path, opts, img_dir)
    key = cache_key(path, opts)
    where = cache_path(path, opts, cache_dir)

    built = []

    def build() -> HumanDataRecords:
        built.append(True)
        try:
            store = build_store(path, opts, where, key)
        except OSError as err:  # a read-only data folder must not stop training; the next run just rebuilds
            log.warning("cannot write datalist cache %s (%s); reading %s into memory", where, err, path.name)
            return read_records(path, opts, img_dir)
        return records_from_store(store, img_dir)

    records = open_or_build(where, key, build, lambda store: records_from_store(store, img_dir), builder=builder,
                            timeout=timeout)
    log.info("%s %s: %d records %s cache %s", name, split, len(records), "built into" if built else "from", where)
    return records


def load_dataset(name: str, split: str = "train", *, data_root: str | Path | None = None,
                 sample_interval: int | None = None, bbox_ratio: float = 1.2,
                 body_model_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                 use_cache: bool = True, builder: bool | None = None, timeout: float | None = None) -> ConcatRecords:
    """All annotation files of catalog dataset ``name``'s ``split`` as one sequence of datalist entries.

    ``sample_interval`` defaults to the catalog's interval for the split; the cache lives in
    ``<data_root>/cache`` unless ``cache_dir`` is given; ``builder`` / ``timeout`` as in :func:`load_or_build`.
    Raises ConfigError for a dataset that is not HumanData and
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
                      use_cache=use_cache, builder=builder, timeout=timeout)
        for f in files])
