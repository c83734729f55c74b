"""Fast generator of large HumanData files in the real layout (for bench/bench_datalist.py).

The project's renderer (data/synthetic_humandata.py) poses the SMPL-X layer and paints every image, which is right
for tests and far too slow for a million rows. This writer fills the same keys, shapes and dtypes with random but
plausible numbers (no images), in blocks, straight into a deflated ``.npz`` as mmhuman3d's ``savez_compressed``
produces (zlib level 1 here, to write gigabytes in minutes; reading speed does not depend on the level much)::

    image_path (N,) <U    bbox_xywh, {l,r}hand_bbox_xywh, face_bbox_xywh (N, 5) f4   keypoints2d_smplx (N, 144, 3) f4
    keypoints3d_smplx (N, 144, 4) f4 (``with_3d``)   keypoints{2,3}d_smplx_mask (144,) u1   smplx {global_orient,
    body_pose (N, 21, 3), left/right_hand_pose (N, 15, 3), jaw_pose, leye/reye_pose, betas, expression, transl} f4
    meta {height, width (N,) i4, gender (N,) <U}   __keypoints_compressed__, __data_len__, config

``python -m bench.humandata_gen OUT.npz --rows N [--no-3d]`` writes one file.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np

LAYER_JOINTS = 144
_BLOCK = 65536  # rows generated and compressed at a time
_SMPLX_SHAPES = {"global_orient": (3,), "body_pose": (21, 3), "left_hand_pose": (15, 3), "right_hand_pose": (15, 3),
                 "jaw_pose": (3,), "leye_pose": (3,), "reye_pose": (3,), "betas": (10,), "expression": (10,),
                 "transl": (3,)}


def _header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _write_blocks(zf: zipfile.ZipFile, key: str, n: int, inner: tuple[int, ...], dtype, make) -> None:
    """Member ``key`` (n, *inner) written block by block: ``make(start, count)`` returns each block."""
    with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
        f.write(_header((n, *inner), np.dtype(dtype)))
        for start in range(0, n, _BLOCK):
            block = np.ascontiguousarray(make(start, min(_BLOCK, n - start)), dtype=dtype)
            f.write(block.tobytes())


def _write_array(zf: zipfile.ZipFile, key: str, a: np.ndarray) -> None:
    with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, np.asanyarray(a), allow_pickle=True)


def write_humandata(path: str | Path, n: int, seed: int = 0, with_3d: bool = True, img_size=(1080, 1920),
                    bad_rows: int = 0) -> Path:
    """Write an ``n``-row HumanData file to ``path`` (layout in the module docstring) and return the path.

    ``bad_rows``: that many rows get a NaN 2D keypoint (skipped by the reader), to exercise the filters.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = img_size

    def rng(start: int, tag: int) -> np.random.Generator:
        return np.random.default_rng([seed, tag, start])

    def kp2d(start: int, count: int) -> np.ndarray:
        r = rng(start, 1)
        centre = r.uniform([w * 0.2, h * 0.2], [w * 0.8, h * 0.8], (count, 1, 2))
        uv = centre + r.normal(0, h * 0.1, (count, LAYER_JOINTS, 2))
        out = np.concatenate([uv, np.ones((count, LAYER_JOINTS, 1))], axis=2).astype(np.float32)
        bad = np.flatnonzero((np.arange(start, start + count) * 7919) % max(n, 1) < bad_rows)
        out[bad, 0, 0] = np.nan
        return out

    def kp3d(start: int, count: int) -> np.ndarray:
        r = rng(start, 2)
        xyz = r.normal(0, 0.4, (count, LAYER_JOINTS, 3)) + np.array([0, 0, 5.0])
        return np.concatenate([xyz, np.ones((count, LAYER_JOINTS, 1))], axis=2).astype(np.float32)

    def box(tag: int, size: float):
        def make(start: int, count: int) -> np.ndarray:
            r = rng(start, tag)
            xy = r.uniform(0, [w * 0.7, h * 0.5], (count, 2))
            wh = r.uniform(0.2, 1.0, (count, 2)) * [w * size, h * size]
            return np.concatenate([xy, wh, np.ones((count, 1))], axis=1)
        return make

    digits = max(6, len(str(n)))
    image_path = np.array([f"images/seq_{i // 1000:05d}/frame_{i:0{digits}d}.jpg" for i in range(n)])
    r = np.random.default_rng([seed, 9])
    smplx = {k: r.normal(0, 0.2, (n, *s)).astype(np.float32) for k, s in _SMPLX_SHAPES.items()}
    meta = {"height": np.full(n, h, np.int32), "width": np.full(n, w, np.int32),
            "gender": np.array(["neutral"] * n)}
    mask = np.ones(LAYER_JOINTS, np.uint8)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True) as zf:
        _write_array(zf, "image_path", image_path)
        del image_path
        for key, tag, size in (("bbox_xywh", 3, 0.3), ("lhand_bbox_xywh", 4, 0.05), ("rhand_bbox_xywh", 5, 0.05),
                               ("face_bbox_xywh", 6, 0.06)):
            _write_blocks(zf, key, n, (5,), np.float32, box(tag, size))
        _write_blocks(zf, "keypoints2d_smplx", n, (LAYER_JOINTS, 3), np.float32, kp2d)
        _write_array(zf, "keypoints2d_smplx_mask", mask)
        if with_3d:
            _write_blocks(zf, "keypoints3d_smplx", n, (LAYER_JOINTS, 4), np.float32, kp3d)
            _write_array(zf, "keypoints3d_smplx_mask", mask)
        # dict members are pickled 0-d object arrays, as np.savez stores them
        _write_array(zf, "smplx", np.array(smplx, dtype=object))
        del smplx
        _write_array(zf, "meta", np.array(meta, dtype=object))
        _write_array(zf, "__keypoints_compressed__", np.bool_(False))
        _write_array(zf, "__data_len__", np.int64(n))
        _write_array(zf, "config", np.array("bench_datalist"))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="output .npz")
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-3d", action="store_true", help="2D keypoints only (like most rows of the training mix)")
    args = p.parse_args(argv)
    print(write_humandata(args.out, args.rows, args.seed, with_3d=not args.no_3d))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
