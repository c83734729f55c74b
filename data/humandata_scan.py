"""One pass over a HumanData file -> the columns of :class:`data.humandata.HumanDataRecords`, written as they come.

:func:`scan_humandata` is the reader behind both :func:`data.humandata.read_records` (columns kept in memory) and
the datalist cache (columns streamed into a :class:`data.colstore.StoreWriter`, never held whole in memory):

1. the small per-row columns of the sampled rows (image size, body box, SMPL-X fit) are read and checked first;
2. the two big keypoint members (2D and, if present, 3D) are streamed together in blocks of sampled rows, each in
   its own thread (zlib releases the GIL, so the two decompress in parallel); a block's rows are mapped to the 137
   set, checked for non-finite values, and only the rows that pass every filter are appended to ``joint_img`` /
   ``joint_cam``;
3. the remaining columns (part boxes, image paths) are read for the kept rows only.

Every sampled row is decompressed (a deflated member cannot be read selectively), but only kept rows are
converted and stored. Skip reasons are counted exactly as before: each skipped row under the first reason that
applies, in the order of :data:`data.humandata.SKIP_REASONS`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from common.errors import InputError
from data import humandata as hd
from data.npz_reader import NpzReader

log = logging.getLogger(__name__)
PREFETCH_BLOCKS = 12  # blocks each keypoint stream may run ahead (~170-220 MB each: they decompress while the fit
# is read)
BLOCK_ROWS = 8192  # sampled rows per streamed keypoint block (13.5 MB of 137 x 3 float32: below glibc's mmap
# threshold, so blocks reuse heap memory instead of faulting in fresh pages every time)


class ColumnSink(Protocol):
    """Where the columns go: :class:`MemoryColumns` or :class:`data.colstore.StoreWriter`."""

    def add(self, name: str, array: np.ndarray) -> None: ...

    def stream(self, name: str, inner: tuple[int, ...], dtype: Any) -> Any: ...


class MemoryColumns:
    """A :class:`ColumnSink` keeping the columns in memory: ``arrays`` after :meth:`finish`."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self._parts: dict[str, tuple[list[np.ndarray], tuple[int, ...], np.dtype]] = {}

    def add(self, name: str, array: np.ndarray) -> None:
        self.arrays[name] = np.ascontiguousarray(array)

    def stream(self, name: str, inner: tuple[int, ...], dtype: Any) -> Any:
        parts: list[np.ndarray] = []
        self._parts[name] = (parts, tuple(inner), np.dtype(dtype))

        class _Col:
            @staticmethod
            def append(block: np.ndarray) -> None:
                parts.append(np.asarray(block, dtype))
        return _Col()

    def finish(self) -> dict[str, np.ndarray]:
        for name, (parts, inner, dtype) in self._parts.items():
            self.arrays[name] = np.concatenate(parts) if parts else np.zeros((0, *inner), dtype)
        self._parts.clear()
        return self.arrays


@dataclass
class _KeypointPlan:
    """How to turn rows of keypoint member ``key`` into (k, 137, d) float32 (see :func:`_plan`)."""

    key: str
    cols: np.ndarray  # member columns to read
    have: np.ndarray | None  # compressed: which of the 137 slots ``cols`` fill (the rest are zero)
    zero: np.ndarray | None  # uncompressed: 137-slot mask of keypoints the key's own mask marks invalid

    def convert(self, block: np.ndarray) -> np.ndarray:
        """(k, len(cols), d') rows of the member (d' <= 3 values kept) -> (k, 137, d') float32 (a new array)."""
        if self.have is not None:
            out = np.zeros((len(block), len(self.have), block.shape[2]), np.float32)
            out[:, self.have] = block
            return out
        out = block.astype(np.float32, copy=False)
        if self.zero is not None and self.zero.any():
            out[:, self.zero] = 0.0
        return out


def _plan(npz: NpzReader, key: str, mapping: np.ndarray, compressed: bool, min_dim: int) -> _KeypointPlan:
    """Check keypoint member ``key`` (shape, its mask, the convention) and plan its reading."""
    shape = npz.header(key)[0]
    if len(shape) != 3 or shape[2] < min_dim:
        raise InputError(f"{npz.path}: '{key}' has shape {shape}, expected (N, keypoints, {min_dim}+)")
    own_mask = hd._read_mask(npz, f"{key}_mask") if f"{key}_mask" in npz else None
    if own_mask is not None and not compressed and len(own_mask) != shape[1]:
        raise InputError(f"{npz.path}: '{key}_mask' has {len(own_mask)} entries for {shape[1]} keypoints")
    if compressed and own_mask is None:
        raise InputError(f"{npz.path}: keypoints are compressed (__keypoints_compressed__) but '{key}_mask' is "
                         f"missing, so '{key}' cannot be decompressed")
    n_kps = len(own_mask) if compressed else shape[1]
    if mapping.max() >= n_kps:
        raise InputError(f"{npz.path}: '{key}' has {n_kps} keypoints; the HumanData 'smplx' convention (at least "
                         f"{mapping.max() + 1}) is needed to pick the 137 SMPLer-X keypoints")
    if compressed:
        kept = np.flatnonzero(own_mask > 0)
        if len(kept) != shape[1]:
            raise InputError(f"{npz.path}: compressed '{key}' has {shape[1]} keypoints but '{key}_mask' keeps "
                             f"{len(kept)}")
        pos = np.full(len(own_mask), -1, dtype=np.int64)
        pos[kept] = np.arange(len(kept))
        src = pos[mapping]
        return _KeypointPlan(key, src[src >= 0], src >= 0, None)
    zero = None if own_mask is None else own_mask[mapping] == 0
    return _KeypointPlan(key, mapping, None, zero)


class _Prefetch:
    """Runs iterator ``it`` in a thread started at once, up to ``depth`` items ahead; ``next()`` re-raises its
    exceptions. The keypoint members start decompressing while the small columns and the fit are being read."""

    _DONE = object()

    def __init__(self, it: Iterator[np.ndarray], depth: int) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(it,), daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, it: Iterator[np.ndarray]) -> None:
        try:
            for item in it:
                if not self._put(item):
                    return
            self._put(self._DONE)
        except BaseException as err:  # noqa: BLE001 -- handed to the consumer
            self._put(err)

    def __next__(self) -> np.ndarray:
        item = self._q.get()
        if item is self._DONE:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class _Appender:
    """Appends blocks to columns in one background thread (file writes release the GIL and may be throttled by the
    kernel's writeback; the build keeps decompressing and converting meanwhile). At most ``depth`` blocks wait."""

    def __init__(self, depth: int = 2) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if self._error is None:
                try:
                    item[0].append(item[1])
                except BaseException as err:  # noqa: BLE001 -- re-raised by the caller
                    self._error = err

    def append(self, column: Any, block: np.ndarray) -> None:
        if self._error is not None:
            raise self._error
        self._q.put((column, block))

    def close(self) -> None:
        """Wait for every queued block; re-raise a write error."""
        self._q.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def scan_humandata(path: str | Path, opts: hd.ReaderOptions, out: ColumnSink, block: int = BLOCK_ROWS
                   ) -> dict[str, Any]:
    """Write the usable rows of HumanData file ``path`` (read with ``opts``) as columns into ``out``.

    Columns: those of :meth:`data.humandata.HumanDataRecords.to_arrays`. Returns its JSON metadata. Raises
    InputError naming the file (and key) for a missing / corrupt file or missing required keys.
    """
    path = Path(path).absolute()
    with NpzReader(path) as npz:
        missing = [k for k in hd.REQUIRED_KEYS if k not in npz]
        if missing:
            raise InputError(f"{path}: required HumanData key(s) {', '.join(missing)} missing (the file has: "
                             f"{', '.join(sorted(npz.members))})")
        shape = npz.header("image_path")[0]
        if len(shape) != 1:
            raise InputError(f"{path}: 'image_path' has shape {shape}, expected (N,) relative image paths")
        n = shape[0]
        rows = np.arange(0, n, opts.sample_interval, dtype=np.int64)
        source = next((s for s in hd.PARAM_SOURCES if s in npz), None)
        plan2d, plan3d, joint_valid, kp_notes = _keypoint_plans(npz, n, opts)
        streams = [_Prefetch(npz.iter_rows(plan.key, rows, plan.cols, block, depth=3), PREFETCH_BLOCKS)
                   for plan in (plan2d, plan3d) if plan is not None]
        try:
            return _scan(npz, path, opts, out, block, n, rows, source, plan2d, plan3d, joint_valid, kp_notes,
                         streams)
        finally:
            for stream in streams:
                stream.close()


def _scan(npz: NpzReader, path: Path, opts: hd.ReaderOptions, out: ColumnSink, block: int, n: int,
          rows: np.ndarray, source: str | None, plan2d: _KeypointPlan, plan3d: _KeypointPlan | None,
          joint_valid: np.ndarray, kp_notes: dict[str, Any], streams: list[_Prefetch]) -> dict[str, Any]:
    """The body of :func:`scan_humandata` once the keypoint streams run."""
    info: dict[str, Any] = {"rows_in_file": int(n), "sample_interval": opts.sample_interval,
                            "rows_sampled": len(rows), "keys": hd._describe_keys(npz, expand=("meta", source))}
    hw, ok_shape, info["img_shape"] = hd._image_sizes(npz, n, rows, opts.img_shape)
    npz.rows_of("bbox_xywh", n, min_cols=4)
    raw_box = npz.read_rows("bbox_xywh", rows).astype(np.float64)
    bbox, ok_box = hd.process_bboxes(raw_box[:, :4], hw[:, 1], hw[:, 0], hd.BOX_ASPECT_RATIO,
                                     opts.bbox_ratio * hd.BODY_BOX_RATIO_FACTOR)
    del raw_box
    info["keypoints"] = kp_notes

    params, flags = None, {k: False for k in hd.SMPLX_VALID_KEYS}
    ok_params = np.ones(len(rows), bool)
    if source is not None:
        raw = npz.read(source)
        raw = raw.item() if raw.ndim == 0 else raw
        if not isinstance(raw, Mapping):
            raise InputError(f"{path}: '{source}' must be a dict of arrays, got {type(raw).__name__}")
        params, flags, notes = hd._extract_params(raw, source, rows, n, f"{path}: {source}",
                                                  frozenset(opts.quirks), opts.body_model_file)
        del raw
        info["smplx"] = {"source": source, **notes}
        for k in hd.SMPLX_PARAM_DIMS:
            ok_params &= np.isfinite(params[k]).all(axis=1)
    elif opts.params_required:
        raise InputError(f"{path}: no parametric fit: none of the keys {', '.join(hd.PARAM_SOURCES)} (required "
                         f"for {opts.name})")

    plans = [p for p in (plan2d, plan3d) if p is not None]
    ok_2d, ok_3d = _stream_keypoints(rows, streams, plans, ok_shape & ok_box & ok_params, out, block)
    # each skipped row is counted under the first reason that applies
    skipped: dict[str, int] = {}
    keep = np.ones(len(rows), bool)
    for reason, ok in zip(hd.SKIP_REASONS, (ok_shape, ok_box, ok_3d, ok_2d, ok_params)):
        if (keep & ~ok).any():
            skipped[reason] = int((keep & ~ok).sum())
        keep &= ok
    kept_rows, hw = rows[keep], hw[keep]
    for name, col in hd._part_box_columns(npz, n, kept_rows, hw, opts.bbox_ratio).items():
        out.add(name, col)
    path_bytes, offsets = _encode_paths(npz.read("image_path")[kept_rows])

    out.add("index", kept_rows)
    out.add("path_bytes", path_bytes)
    out.add("path_offsets", offsets)
    out.add("img_shape", np.rint(hw).astype(np.int32))
    out.add("bbox", bbox[keep])
    out.add("joint_valid", joint_valid)
    for k, v in (params or {}).items():
        out.add(f"smplx.{k}", v[keep])
    log.info("%s %s: %d records from %d rows of %s (interval %d); skipped %s", opts.name, opts.split,
             len(kept_rows), n, path.name, opts.sample_interval, skipped or "none")
    return {"name": opts.name, "split": opts.split, "source": str(path), "camera": opts.camera_dict(),
            "smplx_valid": flags, "has_smplx": params is not None, "skipped": skipped, "info": info}


def _keypoint_plans(npz: NpzReader, n: int, opts: hd.ReaderOptions
                    ) -> tuple[_KeypointPlan, _KeypointPlan | None, np.ndarray, dict[str, Any]]:
    """(2D plan, 3D plan or None, joint_valid (137, 1), notes for stats)."""
    compressed = bool(npz.read("__keypoints_compressed__"))
    key3d = next((k for k in hd.KPS3D_KEYS if k in npz), None)
    key2d = next((k for k in hd.KPS2D_KEYS if k in npz), None)
    if key2d is None:
        raise InputError(f"{npz.path}: no 2D keypoints: none of the keys {', '.join(hd.KPS2D_KEYS)}")
    eye_swap = "humandata_eye_swap" in opts.quirks
    mapping = hd.ORIGINAL_HUMANDATA_137_MAPPING if eye_swap else hd.HUMANDATA_137_MAPPING
    npz.rows_of(key2d, n)
    plan2d = _plan(npz, key2d, mapping, compressed, min_dim=2)
    plan3d = None
    if key3d is not None:
        npz.rows_of(key3d, n)
        plan3d = _plan(npz, key3d, mapping, compressed, min_dim=3)
    joint_valid, mask_key = hd._dataset_mask(npz, key3d, key2d, mapping)
    notes = {"compressed": compressed, "3d": key3d, "2d": key2d, "mask": mask_key,
             "mapping": "original (eyes swapped)" if eye_swap else "model joint_idx",
             "mask_valid_ratio": hd._mask_ratios(npz)}
    return plan2d, plan3d, joint_valid, notes


def _stream_keypoints(rows: np.ndarray, streams: list[_Prefetch], plans: list[_KeypointPlan], pre: np.ndarray,
                      out: ColumnSink, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Consume the keypoint streams (2D, then 3D if present) block by block into ``joint_img`` / ``joint_cam``
    (rows passing ``pre`` and the finiteness checks only). Returns (ok_2d, ok_3d) per sampled row."""
    ok_2d, ok_3d = np.ones(len(rows), bool), np.ones(len(rows), bool)
    plan2d, plan3d = plans[0], (plans[1] if len(plans) > 1 else None)
    blocks2d, blocks3d = streams[0], (streams[1] if len(streams) > 1 else None)
    img_col = out.stream("joint_img", (len(hd.HUMANDATA_137_MAPPING), 3), np.float32)
    if plan3d is not None:
        cam_col = out.stream("joint_cam", (len(hd.HUMANDATA_137_MAPPING), 3), np.float32)
    appender = _Appender()
    try:
        for p in range(0, len(rows), block):
            part = slice(p, min(p + block, len(rows)))
            joint_img = plan2d.convert(next(blocks2d))
            if joint_img.shape[2] < 3:  # no confidence in the file: 1
                joint_img = np.concatenate([joint_img, np.ones((*joint_img.shape[:2], 1), np.float32)], axis=2)
            ok_2d[part] = np.isfinite(joint_img).all(axis=(1, 2))
            joint_cam = None
            if blocks3d is not None:
                joint_cam = plan3d.convert(next(blocks3d))
                ok_3d[part] = np.isfinite(joint_cam).all(axis=(1, 2))
            keep = pre[part] & ok_2d[part] & ok_3d[part]
            every = bool(keep.all())
            appender.append(img_col, joint_img if every else joint_img[keep])
            if joint_cam is not None:
                appender.append(cam_col, joint_cam if every else joint_cam[keep])
    finally:
        appender.close()
    return ok_2d, ok_3d


def _encode_paths(paths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K,) str image paths -> (UTF-8 bytes (total,) uint8, offsets (K + 1,) int64)."""
    paths = np.asarray(paths)
    try:  # vectorised for ASCII str paths (the usual case)
        if paths.dtype.kind != "U":
            raise TypeError("not a str array")
        fixed = paths.astype(np.bytes_)
        lengths = np.char.str_len(fixed).astype(np.int64)
        width = fixed.dtype.itemsize
        table = fixed.view(np.uint8).reshape(len(fixed), width) if width else np.zeros((len(fixed), 0), np.uint8)
        flat = table[np.arange(width)[None, :] < lengths[:, None]]
    except (UnicodeEncodeError, TypeError, ValueError):
        encoded = [str(p).encode("utf-8") for p in paths]
        lengths = np.array([len(e) for e in encoded], np.int64)
        flat = np.frombuffer(b"".join(encoded), np.uint8).copy()
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return np.ascontiguousarray(flat, np.uint8), offsets
