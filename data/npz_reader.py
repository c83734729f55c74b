"""Streaming reader of ``.npz`` members (HumanData annotation files can hold multi-gigabyte keypoint arrays).

:class:`NpzReader` opens the zip once, reads array headers without data, whole members (pickled dict members
included, through an allow-list: no code runs from the file) or selected rows and columns of a numeric member in
chunks of about 32 MB. Every error names the file and the key and says what to do. :func:`decompress_keypoints`
undoes mmhuman3d's keypoint compression.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from common.errors import InputError
from common.utils.safe_pickle import UnsafePickleError, read_npy_header, safe_load

_CHUNK_BYTES = 32 << 20  # keypoint arrays are streamed in chunks of about this size
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError, zipfile.BadZipFile,
                zlib.error, pickle.UnpicklingError, NotImplementedError)


class NpzReader:
    """Members of an ``.npz`` read one at a time; numeric arrays can be read row-chunked with row/column selection,
    so a (N, 190, 4) keypoint array never has to be in memory in full. Errors name the file (and the key)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise InputError(f"HumanData file not found: {path}")
        try:
            self._zip = zipfile.ZipFile(path)
            names = self._zip.namelist()
        except _READ_ERRORS as err:
            raise InputError(f"{path}: not a readable .npz file (corrupt or truncated: {type(err).__name__}: {err}); "
                             "download or export it again") from err
        self.members = {n[:-4]: n for n in names if n.endswith(".npy")}
        self._headers: dict[str, tuple[tuple[int, ...], bool, np.dtype]] = {}
        self._objects: dict[str, np.ndarray] = {}  # unpickled dict members, read once

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._zip.close()

    def __contains__(self, key: str) -> bool:
        return key in self.members

    @contextlib.contextmanager
    def _reading(self, key: str) -> Iterator[None]:
        try:
            yield
        except InputError:
            raise
        except UnsafePickleError as err:
            raise InputError(f"{self.path}: key '{key}': {err}. HumanData stores only arrays, dicts, lists, strings "
                             "and numbers; this file was crafted or written by other software, do not use it") from None
        except _READ_ERRORS as err:
            raise InputError(f"{self.path}: cannot read key '{key}' ({type(err).__name__}: {err}); the file is corrupt "
                             "or truncated, download or export it again") from err

    _read_header = staticmethod(read_npy_header)

    def header(self, key: str) -> tuple[tuple[int, ...], bool, np.dtype]:
        """(shape, fortran_order, dtype) of a member, without reading its data."""
        if key not in self._headers:
            with self._reading(key), self._zip.open(self.members[key]) as f:
                self._headers[key] = self._read_header(f)
        return self._headers[key]

    def read(self, key: str) -> np.ndarray:
        """A whole member. Dict-valued HumanData keys are pickled 0-d object arrays: those are read with the
        restricted unpickler (:mod:`common.utils.safe_pickle`), which admits plain data only, so a crafted file
        cannot run code."""
        if key in self._objects:
            return self._objects[key]
        _, _, dtype = self.header(key)
        with self._reading(key), self._zip.open(self.members[key]) as f:
            if not dtype.hasobject:
                return np.lib.format.read_array(f, allow_pickle=False)
            self._read_header(f)  # numpy stores an object array as a pickle of the array after the header
            a = safe_load(f)
        if not isinstance(a, np.ndarray):
            raise InputError(f"{self.path}: key '{key}' holds a {type(a).__name__}, not an array; the file is not "
                             "HumanData")
        self._objects[key] = a
        return a

    def rows_of(self, key: str, n: int, min_cols: int = 0) -> tuple[int, ...]:
        """Shape of member ``key``, checked to have ``n`` rows (and at least ``min_cols`` columns)."""
        shape = self.header(key)[0]
        if len(shape) < (2 if min_cols else 1) or shape[0] != n or (min_cols and shape[1] < min_cols):
            want = f"({n}, {min_cols}+)" if min_cols else f"({n}, ...)"
            raise InputError(f"{self.path}: '{key}' has shape {shape}, expected {want} (one row per image_path entry)")
        return shape

    def read_rows(self, key: str, rows: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        """``a[rows][:, cols]`` for sorted unique ``rows``, streaming the member in chunks."""
        shape, fortran, dtype = self.header(key)
        if len(shape) == 0 or shape[0] <= (int(rows[-1]) if len(rows) else -1):
            raise InputError(f"{self.path}: key '{key}' has shape {shape}, expected one row per sample "
                             f"(at least {int(rows[-1]) + 1 if len(rows) else 1})")
        if dtype.hasobject or fortran or (cols is not None and len(shape) < 2):
            a = self.read(key)[rows]
            return a if cols is None else a[:, cols]
        inner = shape[1:]
        out_inner = inner if cols is None else (len(cols), *inner[1:])
        out = np.empty((len(rows), *out_inner), dtype=dtype)
        row_bytes = dtype.itemsize * math.prod(inner)
        if len(rows) == 0 or row_bytes == 0:
            return out
        per_chunk = max(1, _CHUNK_BYTES // row_bytes)
        with self._reading(key), self._zip.open(self.members[key]) as f:
            self._read_header(f)
            start, done, last = 0, 0, int(rows[-1])
            while start <= last:
                count = min(per_chunk, shape[0] - start)
                buf = f.read(count * row_bytes)
                if len(buf) != count * row_bytes:
                    raise EOFError(f"data ends after {start * row_bytes + len(buf)} bytes")
                block = np.frombuffer(buf, dtype=dtype).reshape(count, *inner)
                stop = int(np.searchsorted(rows, start + count))
                part = block[rows[done:stop] - start]
                out[done:stop] = part if cols is None else part[:, cols]
                start, done = start + count, stop
        return out


    def iter_rows(self, key: str, rows: np.ndarray, cols: np.ndarray | None = None, block: int = 8192,
                  depth: int | None = None, chunk_bytes: int = 24 << 20) -> Iterator[np.ndarray]:
        """:meth:`read_rows` in pieces: yields ``a[rows[p:p + block]][:, cols][..., :depth]`` for p = 0, block,
        2 block, ..., streaming the member once, so only one block of rows (plus one chunk of the file of about
        ``chunk_bytes``) is in memory. ``depth`` keeps the first values of the last axis (e.g. x, y, z of x, y, z,
        confidence) in the same copy."""
        shape, fortran, dtype = self.header(key)
        if len(shape) == 0 or shape[0] <= (int(rows[-1]) if len(rows) else -1):
            raise InputError(f"{self.path}: key '{key}' has shape {shape}, expected one row per sample "
                             f"(at least {int(rows[-1]) + 1 if len(rows) else 1})")
        last = slice(None) if depth is None or len(shape) < 3 else slice(0, depth)
        if dtype.hasobject or fortran or (cols is not None and len(shape) < 2):
            whole = self.read_rows(key, rows, cols)
            for p in range(0, len(rows), block):
                yield whole[p:p + block][..., last] if len(shape) >= 3 else whole[p:p + block]
            return
        inner = shape[1:]
        row_bytes = dtype.itemsize * math.prod(inner)
        per_chunk = max(1, chunk_bytes // max(row_bytes, 1))
        with self._reading(key), self._zip.open(self.members[key]) as f:
            self._read_header(f)
            pos = 0  # next file row to read
            for p in range(0, len(rows), block):
                want = rows[p:p + block]
                parts = []
                done = 0
                while done < len(want):
                    first = int(want[done])
                    if first > pos:  # skip rows that are not kept, in chunks
                        skip = min(first - pos, per_chunk)
                        if len(f.read(skip * row_bytes)) != skip * row_bytes:
                            raise EOFError(f"data ends before row {pos + skip}")
                        pos += skip
                        continue
                    count = min(per_chunk, shape[0] - pos, int(want[-1]) - pos + 1)
                    buf = f.read(count * row_bytes)
                    if len(buf) != count * row_bytes:
                        raise EOFError(f"data ends after {pos * row_bytes + len(buf)} bytes")
                    chunk = np.frombuffer(buf, dtype=dtype).reshape(count, *inner)
                    stop = done + int(np.searchsorted(want[done:], pos + count))
                    parts.append(_select(chunk, want[done:stop] - pos, cols, last))
                    pos, done = pos + count, stop
                yield parts[0] if len(parts) == 1 else np.concatenate(parts)


def _select(chunk: np.ndarray, sel: np.ndarray, cols: np.ndarray | None, last: slice) -> np.ndarray:
    """A new array ``chunk[sel][:, cols][..., last]`` (rows as a strided view when evenly spaced: the sample
    interval; columns with ``take``, several times faster than one fancy index over rows and columns)."""
    if len(sel) > 1 and (np.diff(sel) == sel[1] - sel[0]).all():
        rows = chunk[int(sel[0]):int(sel[-1]) + 1:int(sel[1] - sel[0])]
    else:
        rows = chunk[int(sel[0]):int(sel[0]) + 1] if len(sel) == 1 else chunk[sel]
    if chunk.ndim >= 3:
        rows = rows[..., last]
    return rows.take(cols, axis=1) if cols is not None else np.array(rows)


def decompress_keypoints(compressed: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Undo HumanData keypoint compression: (N, m, d) kept columns + (K,) 0/1 mask -> (N, K, d), zeros where mask 0."""
    kept = np.flatnonzero(np.asarray(mask) > 0)
    if compressed.shape[1] != len(kept):
        raise ValueError(f"compressed keypoints have {compressed.shape[1]} columns, the mask keeps {len(kept)}")
    out = np.zeros((compressed.shape[0], len(mask), compressed.shape[2]), dtype=compressed.dtype)
    out[:, kept] = compressed
    return out
