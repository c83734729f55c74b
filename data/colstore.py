"""Column stores: a folder of ``.npy`` files that every process on a node maps instead of reading (datalist caches).

Layout of a store ``<name>.cols/``::

    meta.json        {"format", "key", "columns": {column name: file name}, "meta": {...caller's JSON...}}
    NNN_<name>.npy   one fixed-width array per column (numeric dtypes only, never pickled objects)
    COMPLETE         the key again, written last: a store without it (or with another key) is never read

* **Sharing.** :meth:`ColumnStore.open` maps every column read-only (``np.load(mmap_mode='r', allow_pickle=False)``):
  the pages live once in the page cache and every rank and data-loader worker of the node shares them (PSS = size /
  processes). Pickling a store (spawned workers) sends its path, not its data.
* **Atomic.** :class:`StoreWriter` writes into a temporary folder next to the final one, fsyncs every file, writes
  ``COMPLETE`` last and renames the folder into place; an interrupted build leaves only a temporary folder, which
  is never read (and is removed by the next build of the same store).
* **Streaming.** :meth:`StoreWriter.stream` appends row blocks to a column whose length is known only at the end
  (the ``.npy`` header has a fixed 128-byte slot that is filled in when the column is closed), so a build never
  holds a whole large column in memory.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

STORE_FORMAT = 2  # format 1 was the single-.npz cache
MARKER = "COMPLETE"
_HEADER_BYTES = 128  # reserved .npy header of streamed columns (multiple of 64: the data stays aligned)
_LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError)


def _npy_header(shape: tuple[int, ...], dtype: np.dtype, size: int = _HEADER_BYTES) -> bytes:
    """A version 1.0 ``.npy`` header of exactly ``size`` bytes (padded with spaces, as the format allows)."""
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)})
    body = text.encode("latin1")
    pad = size - 10 - len(body) - 1
    if pad < 0:
        raise ValueError(f"column header for shape {shape} does not fit {size} bytes")
    return b"\x93NUMPY\x01\x00" + (size - 10).to_bytes(2, "little") + body + b" " * pad + b"\n"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StreamColumn:
    """A column written block by block: ``append((k, *inner))`` arrays, then :meth:`close` (done by the writer)."""

    def __init__(self, path: Path, inner: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.inner, self.dtype, self.rows = path, tuple(inner), np.dtype(dtype), 0
        self._f = open(path, "wb")  # noqa: SIM115 -- closed by close()
        self._f.write(_npy_header((0, *self.inner), self.dtype))

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.inner:
            raise ValueError(f"{self.path.name}: block of shape {block.shape}, expected (k, {self.inner})")
        self._f.write(memoryview(block.reshape(-1).view(np.uint8)))
        self.rows += len(block)

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.seek(0)
        self._f.write(_npy_header((self.rows, *self.inner), self.dtype))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()


class StoreWriter:
    """Builds a store in a temporary folder; :meth:`commit` makes it visible at ``final`` atomically.

    Use as a context manager: leaving the block without :meth:`commit` (an exception) deletes the temporary folder.
    """

    def __init__(self, final: str | Path, key: str) -> None:
        self.final, self.key = Path(final), key
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.final.with_name(f".{self.final.name}.tmp-{socket.gethostname()}-{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        self.columns: dict[str, str] = {}
        self._streams: list[StreamColumn] = []

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        if self.tmp.exists():  # not committed
            for s in self._streams:
                s._f.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _file(self, name: str) -> Path:
        if name in self.columns:
            raise ValueError(f"column {name!r} written twice")
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:60]
        self.columns[name] = f"{len(self.columns):03d}_{safe}.npy"
        return self.tmp / self.columns[name]

    def add(self, name: str, array: np.ndarray) -> None:
        """Write a whole column (a numeric array of any shape)."""
        a = np.ascontiguousarray(array)
        if a.dtype.hasobject:
            raise TypeError(f"column {name!r} has dtype object; stores hold numeric arrays only")
        path = self._file(name)
        with open(path, "wb") as f:
            np.lib.format.write_array(f, a, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())

    def stream(self, name: str, inner: tuple[int, ...], dtype: Any) -> StreamColumn:
        """A column of rows of shape ``inner`` appended block by block (closed by :meth:`commit`)."""
        col = StreamColumn(self._file(name), inner, np.dtype(dtype))
        self._streams.append(col)
        return col

    def commit(self, meta: Mapping[str, Any]) -> Path:
        """Close the columns, write ``meta.json`` and the marker, rename the folder to ``final``; returns it."""
        for s in self._streams:
            s.close()
        doc = {"format": STORE_FORMAT, "key": self.key, "columns": self.columns, "meta": dict(meta)}
        for name, text in (("meta.json", json.dumps(doc)), (MARKER, self.key)):  # the marker last
            with open(self.tmp / name, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        _fsync(self.tmp)
        for _ in range(3):
            try:
                os.rename(self.tmp, self.final)
                break
            except OSError:  # a previous (stale or damaged) store, or another node's builder finished first
                if read_marker(self.final) == self.key and ColumnStore.open(self.final, self.key) is not None:
                    shutil.rmtree(self.tmp, ignore_errors=True)
                    break
                old = self.final.with_name(f".{self.final.name}.old-{socket.gethostname()}-{os.getpid()}")
                try:
                    os.rename(self.final, old)
                except FileNotFoundError:
                    continue
                shutil.rmtree(old, ignore_errors=True)  # processes still mapping it keep their pages
        else:
            raise OSError(f"cannot move the new datalist cache {self.tmp} to {self.final}")
        _fsync(self.final.parent)
        return self.final


def read_marker(path: str | Path) -> str | None:
    """The key in ``path/COMPLETE``, or None when the store is absent or incomplete."""
    try:
        return (Path(path) / MARKER).read_text()
    except OSError:
        return None


def _map(path: Path) -> np.ndarray:
    a = np.load(path, mmap_mode="r", allow_pickle=False)
    return np.asarray(a)  # a plain ndarray view of the mapping (entries then hold ndarrays, not memmaps)


class ColumnStore:
    """A complete store opened read-only: ``store[name]`` is the mapped column, ``store.meta`` the caller's JSON."""

    def __init__(self, path: Path, key: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.path, self.key, self.meta, self._arrays = path, key, meta, arrays

    @classmethod
    def open(cls, path: str | Path, key: str) -> ColumnStore | None:
        """The store at ``path`` if it is complete and was written with ``key``; None if absent, incomplete or
        stale; None (with a warning) if damaged. Never executes anything from the files."""
        path = Path(path)
        marker = read_marker(path)
        if marker is None:
            return None
        if marker != key:
            log.info("datalist cache %s is stale (other inputs or code); it will be rebuilt", path)
            return None
        try:
            doc = json.loads((path / "meta.json").read_text())
            if doc.get("format") != STORE_FORMAT or doc.get("key") != key:
                return None
            arrays = {name: _map(path / file) for name, file in doc["columns"].items()}
        except _LOAD_ERRORS as err:
            log.warning("datalist cache %s is unreadable (%s: %s); it will be rebuilt", path, type(err).__name__, err)
            return None
        return cls(path, key, doc["meta"], arrays)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def __contains__(self, name: str) -> bool:
        return name in self._arrays

    @property
    def names(self) -> list[str]:
        return list(self._arrays)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._arrays.values())

    def __reduce__(self):  # spawned workers map the files themselves instead of receiving a copy
        return (_reopen, (str(self.path), self.key))


def _reopen(path: str, key: str) -> ColumnStore:
    store = ColumnStore.open(path, key)
    if store is None:
        raise OSError(f"datalist cache {path} changed or vanished while in use; restart the run")
    return store
