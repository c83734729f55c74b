"""EHF (expressive hands and faces, 100 frames): the whole-body test set scored against its registered meshes.

Files (under the data root)::

    EHF/data/EHF.json           COCO-style: images {id, file_name, height, width}; annotations {image_id,
                                body_bbox, lefthand_bbox, righthand_bbox, face_bbox} (xywh px)
    EHF/data/<NN>_img.jpg       the images (``file_name`` relative to EHF/data)
    EHF/data/<NN>_align.ply     the ground-truth SMPL-X mesh of frame NN (10475 vertices, metres); the frame is
                                the prefix of the image name before the first '_'

The registered meshes are stored in the scanner frame; the camera frame is ``R @ v`` with R the Rodrigues rotation
of :data:`EHF_ROTVEC` (as the original). A test sample carries that mesh as ``targets['smplx_mesh_cam']``
(10475, 3) m, read from the PLY file when the sample is built; EHF has no SMPL-X parameters. The default
:class:`common.engine.evaluator.WholeBodyEvaluator` then computes the 14 whole-body metrics (facts sheet 6).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from common.body_model import joint_sets as js
from common.errors import InputError
from common.utils.image import process_bbox
from data.catalog import DatasetSpec, resolve_files, resolve_img_dir
from data.formats.base import EntryRecords, LazyArray, entry_function, read_coco

EHF_ROTVEC = (-2.98747896, 0.01172457, -0.05704687)  # scanner -> camera frame, axis-angle (rad)
BOX_KEYS = ("body_bbox", "lefthand_bbox", "righthand_bbox", "face_bbox")


def ehf_rotation() -> np.ndarray:
    """(3, 3) float64 rotation from the scanner frame of the ``_align.ply`` meshes to the camera frame."""
    return cv2.Rodrigues(np.asarray(EHF_ROTVEC, np.float64).reshape(3, 1))[0]


# ----------------------------------------------------------------------------------------------------------------
# PLY
_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def read_ply_vertices(path: str | Path) -> np.ndarray:
    """(V, 3) float32 ``x, y, z`` of the ``vertex`` element of a PLY file (ascii or binary, either byte order).

    Only the elements up to and including ``vertex`` are parsed (the vertex element comes first in mesh files; a
    list property before it is not supported). Raises InputError naming the file for anything unreadable.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read mesh {path}: {err}") from err
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise InputError(f"{path} is not a PLY file (no 'ply' magic or 'end_header'); download EHF again")
    header = data[:end].decode("ascii", "replace").splitlines()
    body = data[data.index(b"\n", end) + 1:]
    fmt, elements = "", []  # elements: [name, count, [(prop, dtype)]]
    for line in header:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            elements.append([parts[1], int(parts[2]), []])
        elif parts[0] == "property" and elements:
            if parts[1] == "list":
                elements[-1][2].append((parts[-1], None))
            else:
                elements[-1][2].append((parts[-1], _PLY_TYPES.get(parts[1])))
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise InputError(f"{path}: no 'vertex' element in the PLY header")
    try:
        if fmt == "ascii":
            rows, skip = body.decode("ascii").split("\n"), sum(e[1] for e in elements[:names.index("vertex")])
            vert = elements[names.index("vertex")]
            cols = [p for p, _ in vert[2]]
            table = np.array([r.split()[:len(cols)] for r in rows[skip:skip + vert[1]]], np.float64)
            out = table[:, [cols.index(k) for k in ("x", "y", "z")]]
        elif fmt in ("binary_little_endian", "binary_big_endian"):
            order = "<" if fmt == "binary_little_endian" else ">"
            offset = 0
            for name, count, props in elements:
                if any(t is None for _, t in props):
                    raise InputError(f"{path}: list property in element '{name}' before the vertices")
                dtype = np.dtype([(p, order + t) for p, t in props])
                if name == "vertex":
                    table = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
                    out = np.stack([table[k].astype(np.float64) for k in ("x", "y", "z")], 1)
                    break
                offset += dtype.itemsize * count
        else:
            raise InputError(f"{path}: unknown PLY format '{fmt}'")
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise InputError(f"{path}: cannot read the vertices ({type(err).__name__}: {err}); the file is damaged, "
                         "download EHF again") from err
    return out.astype(np.float32)


@entry_function
def read_ehf_mesh(path: str | Path) -> np.ndarray:
    """(10475, 3) float32 GT mesh of one frame in the camera frame (metres): ``R @ v`` of the PLY vertices."""
    v = read_ply_vertices(path)
    if v.shape != (js.SMPLX_VERTEX_NUM, 3):
        raise InputError(f"{path}: {v.shape[0]} vertices, expected the {js.SMPLX_VERTEX_NUM} of SMPL-X")
    return (v.astype(np.float64) @ ehf_rotation().T).astype(np.float32)


def write_ply_vertices(path: str | Path, vertices: np.ndarray, faces: np.ndarray | None = None) -> None:
    """Binary little-endian PLY with float vertices (and optional uchar/int face lists), as EHF's meshes."""
    v = np.asarray(vertices, np.float32)
    head = ["ply", "format binary_little_endian 1.0", f"element vertex {len(v)}", "property float x",
            "property float y", "property float z"]
    if faces is not None:
        head += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    payload = ("\n".join([*head, "end_header"]) + "\n").encode("ascii") + v.astype("<f4").tobytes()
    if faces is not None:
        f = np.asarray(faces, np.int32)
        rec = np.zeros(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
        rec["n"], rec["i"] = 3, f
        payload += rec.tobytes()
    from common.utils.io import atomic_open

    with atomic_open(path, "wb") as fh:
        fh.write(payload)


# ----------------------------------------------------------------------------------------------------------------
# Loader
def _xyxy(box: Any, w: int, h: int, ratio: float) -> np.ndarray | None:
    """Hand / face xywh -> processed (aspect 0.75, ``ratio``) xyxy px, as the original's EHF loader; None if
    degenerate."""
    b = process_bbox(np.asarray(box, np.float64).reshape(4), w, h, ratio=ratio)
    if b is None:
        return None
    b = b.astype(np.float32)
    b[2:] += b[:2]
    return b


def load(spec: DatasetSpec, split: str, *, data_root=None, sample_interval: int = 1, bbox_ratio: float = 1.2,
         body_model_dir=None) -> EntryRecords:
    """EHF's test split as entries (see the module docstring); ``sample_interval`` keeps every n-th annotation."""
    (annot_path,) = resolve_files(spec, split, data_root)
    img_dir = resolve_img_dir(spec, data_root)
    images, anns = read_coco(annot_path, "EHF")
    entries, skipped = [], Counter()
    for k, ann in enumerate(anns[::max(1, sample_interval)]):
        try:
            img = images[int(ann["image_id"])]
            w, h, file_name = int(img["width"]), int(img["height"]), str(img["file_name"])
            boxes = {key: ann[key] for key in BOX_KEYS}
        except KeyError as err:
            raise InputError(f"{annot_path}: annotation {ann.get('id', k)} lacks {err} (needs image_id and "
                             f"{', '.join(BOX_KEYS)}; images need id, file_name, width, height)") from err
        bbox = process_bbox(np.asarray(boxes["body_bbox"], np.float64), w, h, ratio=bbox_ratio)
        if bbox is None:
            skipped["invalid_bbox"] += 1
            continue
        frame = re.split(r"_", Path(file_name).name)[0]
        mesh_path = img_dir / f"{frame}_align.ply"
        if not mesh_path.is_file():
            skipped["missing_mesh"] += 1
            continue
        entries.append({
            "img_path": str(img_dir / file_name), "img_shape": (h, w), "bbox": bbox,
            "lhand_bbox": _xyxy(boxes["lefthand_bbox"], w, h, bbox_ratio),
            "rhand_bbox": _xyxy(boxes["righthand_bbox"], w, h, bbox_ratio),
            "face_bbox": _xyxy(boxes["face_bbox"], w, h, bbox_ratio),
            "joint_img": np.zeros((js.JOINT_NUM, 3), np.float32), "joint_cam": None,
            "joint_valid": np.zeros((js.JOINT_NUM, 1), np.float32), "smplx_param": None, "camera": {},
            "dataset": spec.name, "index": int(ann.get("id", k)),
            "gt": {"smplx_mesh_cam": LazyArray(read_ehf_mesh, str(mesh_path))},
        })
    if skipped.get("missing_mesh"):
        raise InputError(f"EHF: {skipped['missing_mesh']} ground-truth mesh(es) <frame>_align.ply missing in "
                         f"{img_dir}; the EHF download has them next to the images")
    return EntryRecords(spec.name, split, entries, skipped, {"file": str(annot_path)})


# ----------------------------------------------------------------------------------------------------------------
# Synthetic EHF in the official layout (tests, demos)
def write_synthetic_ehf(data_root: str | Path, body_model_dir: str | Path, n: int = 3, seed: int = 0,
                        img_size: tuple[int, int] = (480, 640)) -> dict[str, Any]:
    """Render ``n`` frames of a posed body (the synthetic HumanData renderer) and write ``EHF/data/`` as the real
    download: ``EHF.json``, ``<NN>_img.jpg`` and ``<NN>_align.ply`` (the mesh in the scanner frame, ``R^T v_cam``).

    Returns ``{'meshes': (n, 10475, 3) camera-frame float32, 'boxes': (n, 4) body xywh px}``.
    """
    from common.body_model import SMPLXLayer, load_eval_assets
    from data import synthetic_humandata as sh

    folder = Path(data_root) / "EHF" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    layer = SMPLXLayer(body_model_dir, "neutral")
    assets = load_eval_assets(body_model_dir)
    camera = sh.camera_for(img_size)
    regions = sh._face_regions(layer)
    rot = ehf_rotation()
    images, anns, meshes, bodies = [], [], [], []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        params = sh.sample_smplx_params(rng)
        v0, _ = sh._run_layer(layer, [params])
        transl = sh._place(v0[0].astype(np.float64), rng, camera, img_size, (0.0, float(img_size[1])))
        verts, _ = sh._run_layer(layer, [params], transl[None].astype(np.float32))
        v = verts[0]
        img = sh.synthetic_background(seed, i, img_size)
        sh._paint(img, [v], layer.faces, [sh._face_colours(regions, rng)], camera)
        stem = f"{i + 1:02d}"
        with open(folder / f"{stem}_img.jpg", "wb") as fh:
            fh.write(cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
        write_ply_vertices(folder / f"{stem}_align.ply", v.astype(np.float64) @ rot, layer.faces)  # R^T v per row
        uv = sh.project(v, camera["focal"], camera["princpt"])
        boxes = {"body_bbox": sh._extent_xywh(uv)}
        for key, idx in (("lefthand_bbox", assets.hand_vertex_idx["left"]),
                         ("righthand_bbox", assets.hand_vertex_idx["right"]), ("face_bbox", assets.face_vertex_idx)):
            boxes[key] = sh._extent_xywh(uv[idx])
        images.append({"id": i, "file_name": f"{stem}_img.jpg", "height": img_size[0], "width": img_size[1]})
        anns.append({"id": i, "image_id": i, **{k: [float(x) for x in b] for k, b in boxes.items()}})
        meshes.append(v)
        bodies.append(boxes["body_bbox"])
    from common.utils.io import save_json

    save_json(folder / "EHF.json", {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]})
    return {"meshes": np.stack(meshes).astype(np.float32), "boxes": np.stack(bodies).astype(np.float32)}
